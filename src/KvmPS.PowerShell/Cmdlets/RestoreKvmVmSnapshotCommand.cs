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
/// (kvmps vm snapshot restore there; checkpoint names exact).
/// </summary>
[Cmdlet(VerbsData.Restore, "KvmVmSnapshot", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm))]
public sealed class RestoreKvmVmSnapshotCommand : KvmSnapshotCmdletBase
{
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>The host the VM is on, over SSH (<c>host</c> or <c>user@host</c>); this host without it.</summary>
    [Parameter(ParameterSetName = NameSet, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("ComputerName")]
    public string? HostName { get; set; }

    /// <summary>The SSH user on -HostName.</summary>
    [Parameter(ParameterSetName = NameSet, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? UserName { get; set; }

    /// <summary>The private key to log in to -HostName with.</summary>
    [Parameter(ParameterSetName = NameSet, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? KeyFilePath { get; set; }

    protected override void Process()
    {
        if (RemoteHost.From(this, HostName, UserName, KeyFilePath) is not { } remote)
        {
            base.Process();
            return;
        }
        foreach (var checkpoint in Name!)
            if (WildcardPattern.ContainsWildcardCharacters(checkpoint))
                throw KvmParameterException.Combination("Name", checkpoint, "With -HostName give the checkpoint's exact name (wildcards are resolved on this host only).");
        var selection = VmResolver.Resolve(remote.ListNames(), VMName, null);
        foreach (var missing in selection.NotFound)
            Output.WriteError(remote.VmNotFound(missing));
        foreach (var vm in selection.Names)
            foreach (var checkpoint in Name!)
                ForTarget(checkpoint, () =>
                {
                    if (!Output.ShouldProcess($"{vm} on host {remote.Display}", $"Restore checkpoint '{checkpoint}'; the VM's current state is lost"))
                        return;
                    var info = remote.Kvmps.RestoreSnapshot(vm, checkpoint);
                    if (PassThru.IsPresent)
                        Output.WriteObject(remote.Wrap(info));
                });
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
