using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;
using KvmPS.Management.Remote;

namespace KvmPS.Commands;

/// <summary>
/// Checkpoint-KvmVm: takes a checkpoint of a running, paused or off VM (Hyper-V's Checkpoint-VM); with -HostName on that
/// host (kvmps vm snapshot create there).
/// </summary>
[Cmdlet(VerbsData.Checkpoint, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(KvmVmSnapshot), typeof(PSObject))]
public sealed class CheckpointKvmVmCommand : KvmRemoteVmCmdletBase
{
    /// <summary>The checkpoint's name; default "VM - (date - time)" as Hyper-V names them.</summary>
    [Parameter(Position = 1)]
    [ValidateNotNullOrEmpty]
    public string? SnapshotName { get; set; }

    /// <summary>Accept raw disks: the checkpoint then has no disk snapshots and restoring it leaves every disk as it is.</summary>
    [Parameter]
    public SwitchParameter AllowRawDisks { get; set; }

    /// <summary>Write only the memory changed since the VM's previous checkpoint of this run (a diff on it); running or paused VMs.</summary>
    [Parameter]
    public SwitchParameter Incremental { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        if (!Output.ShouldProcess(name, SnapshotName is null ? "Create checkpoint" : $"Create checkpoint '{SnapshotName}'"))
            return;
        var snapshot = Manager.Checkpoint(name, SnapshotName, new CheckpointOptions { AllowRawDisks = AllowRawDisks.IsPresent, Incremental = Incremental.IsPresent });
        Output.WriteVerbose($"VM '{name}': checkpoint '{snapshot.Name}' ({snapshot.Id}) taken{(Incremental.IsPresent ? " with the memory changed since its parent" : snapshot.IncludesMemory ? " with memory" : ", disks only")}.");
        if (PassThru.IsPresent)
            Output.WriteObject(SnapshotSelection.ToOutput(snapshot, Manager.GetSnapshots(name)));
    }

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", SnapshotName is null ? "Create checkpoint" : $"Create checkpoint '{SnapshotName}'"))
            return;
        using var json = remote.Kvmps.Checkpoint(name, SnapshotName, AllowRawDisks.IsPresent, Incremental.IsPresent);
        var root = json.RootElement;
        Output.WriteVerbose($"VM '{name}' on host '{remote.Display}': checkpoint '{(root.TryGetProperty("name", out var n) ? n.GetString() : SnapshotName)}' taken.");
        if (PassThru.IsPresent)
            Output.WriteObject(RemoteObject.From(root, remote, RemoteObject.Snapshot));
    }
}
