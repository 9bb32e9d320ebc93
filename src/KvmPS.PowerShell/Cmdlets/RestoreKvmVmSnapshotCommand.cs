using System.Globalization;
using System.Management.Automation;
using KvmPS.Management.Snapshots;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Restore-KvmVmSnapshot: applies a checkpoint (Hyper-V's Restore-VMSnapshot). The VM's current state is lost: a
/// running VM is turned off, saved state discarded, disks and settings go back to the checkpoint; with memory the VM
/// runs again from the checkpoint. ConfirmImpact High: it asks unless -Confirm:$false. With -HostName: on that host
/// (kvmps vm snapshot restore there).
/// </summary>
[Cmdlet(VerbsData.Restore, "KvmVmSnapshot", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm))]
public sealed class RestoreKvmVmSnapshotCommand : KvmSnapshotCmdletBase
{
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    internal override void ProcessRemoteSnapshot(RemoteHost remote, string vm, PSObject checkpoint)
    {
        var snapshot = (string)checkpoint.Properties["Name"].Value;
        if (!Output.ShouldProcess($"{vm} on host {remote.Display}", $"Restore checkpoint '{snapshot}'; the VM's current state is lost"))
            return;
        var info = remote.Kvmps.RestoreSnapshot(vm, snapshot);
        if (PassThru.IsPresent)
            Output.WriteObject(remote.Wrap(info));
    }

    protected override void ProcessSnapshot(VmSnapshot snapshot)
    {
        var vm = Manager.Get(snapshot.VmName);
        var taken = snapshot.CreationTimeUtc.ToLocalTime().ToString("G", CultureInfo.CurrentCulture);
        var lost = vm.IsActive
            ? $"the VM is {vm.State}: it is turned off and its current state is lost"
            : vm.State == Management.Lifecycle.VmState.Saved ? "its saved state and current disks are lost" : "its current disks and settings are lost";
        if (!Output.ShouldProcess(snapshot.VmName, $"Restore checkpoint '{snapshot.Name}' (taken {taken}); {lost}"))
            return;
        var info = Manager.RestoreSnapshot(snapshot.VmName, snapshot.Name);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(info));
    }
}
