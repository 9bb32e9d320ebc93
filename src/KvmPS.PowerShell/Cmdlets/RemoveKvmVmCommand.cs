using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Remove-KvmVm: deletes the VM from the store with its checkpoints and saved state, and its disk directory unless
/// -KeepDisks. As Hyper-V's Remove-VM, the checkpoints go too: their internal qcow2 snapshots are deleted from the disks
/// that stay (kept disks, disks outside the store).
/// </summary>
[Cmdlet(VerbsCommon.Remove, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(VmRemoveResult))]
public sealed class RemoveKvmVmCommand : KvmRemoteVmCmdletBase
{
    /// <summary>Turn off an active VM first (otherwise removing it fails).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Move the VM's disk directory to the store's retained-disks folder instead of deleting it.</summary>
    [Parameter]
    public SwitchParameter KeepDisks { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        var what = KeepDisks.IsPresent ? "Remove VM and its checkpoints (keeping its disks)" : "Remove VM and its checkpoints and delete its disks";
        if (!Output.ShouldProcess(name, Force.IsPresent ? what + ", turning it off if it is running" : what))
            return;
        var result = Manager.Remove(name, Force.IsPresent, deleteDisks: !KeepDisks.IsPresent);
        foreach (var disk in result.RemovedDiskSnapshots)
            Output.WriteVerbose($"VM '{name}': deleted checkpoint snapshot '{disk.SnapshotId}' from disk '{disk.Path}'.");
        if (result.RetainedDisksDirectory is { } kept)
            Output.WriteVerbose($"VM '{name}': disks kept in '{kept}'.");
        if (PassThru.IsPresent)
            Output.WriteObject(result);
    }

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var what = KeepDisks.IsPresent ? "Remove VM and its checkpoints (keeping its disks)" : "Remove VM and its checkpoints and delete its disks";
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", Force.IsPresent ? what + ", turning it off if it is running" : what))
            return;
        var arguments = new List<string> { "vm", "remove", "--json" };
        if (Force.IsPresent)
            arguments.Add("--force");
        if (KeepDisks.IsPresent)
            arguments.Add("--keep-disks");
        arguments.AddRange(["--", name]);
        foreach (var result in remote.Objects(arguments, RemoteObject.RemoveResult))
            if (PassThru.IsPresent)
                Output.WriteObject(result);
    }
}
