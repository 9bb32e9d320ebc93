using System.Management.Automation;
using KvmPS.Management.Snapshots;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Remove-KvmVmSnapshot: removes checkpoints (Hyper-V's Remove-VMSnapshot); their children move up to the removed
/// one's parent, or go with it with -IncludeAllChildSnapshots.
/// </summary>
[Cmdlet(VerbsCommon.Remove, "KvmVmSnapshot", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVmSnapshot))]
public sealed class RemoveKvmVmSnapshotCommand : KvmSnapshotCmdletBase
{
    [Parameter]
    [Alias("IncludeAllChildCheckpoints")]
    public SwitchParameter IncludeAllChildSnapshots { get; set; }

    /// <summary>Writes the removed checkpoints.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessSnapshot(VmSnapshot snapshot)
    {
        var all = Manager.GetSnapshots(snapshot.VmName);
        // Gone already: removed as a child of an earlier match of the same call.
        if (all.All(s => s.Id != snapshot.Id))
            return;
        var action = IncludeAllChildSnapshots.IsPresent ? $"Remove checkpoint '{snapshot.Name}' and all its child checkpoints" : $"Remove checkpoint '{snapshot.Name}'";
        if (!Output.ShouldProcess(snapshot.VmName, action))
            return;
        var removed = Manager.RemoveSnapshot(snapshot.VmName, snapshot.Name, IncludeAllChildSnapshots.IsPresent);
        foreach (var r in removed)
        {
            Output.WriteVerbose($"VM '{r.VmName}': checkpoint '{r.Name}' removed.");
            if (PassThru.IsPresent)
                Output.WriteObject(SnapshotSelection.ToOutput(r, all));
        }
    }

    private readonly HashSet<(string Vm, string Name)> _removedRemote = [];

    internal override void ProcessRemoteSnapshot(RemoteHost remote, string vm, PSObject checkpoint)
    {
        var snapshot = (string)checkpoint.Properties["Name"].Value;
        // Gone already: removed as a child of an earlier match of the same call (as here).
        if (_removedRemote.Contains((vm, snapshot)))
            return;
        var action = IncludeAllChildSnapshots.IsPresent ? $"Remove checkpoint '{snapshot}' and all its child checkpoints" : $"Remove checkpoint '{snapshot}'";
        if (!Output.ShouldProcess($"{vm} on host {remote.Display}", action))
            return;
        string[] arguments = IncludeAllChildSnapshots.IsPresent
            ? ["vm", "snapshot", "remove", "--json", "--include-children", "--", vm, snapshot]
            : ["vm", "snapshot", "remove", "--json", "--", vm, snapshot];
        using var removed = remote.Run(arguments);
        foreach (var name in removed.RootElement.EnumerateArray().Select(e => e.GetString()!))
        {
            _removedRemote.Add((vm, name));
            Output.WriteVerbose($"VM '{vm}' on host '{remote.Display}': checkpoint '{name}' removed.");
        }
        // The checkpoint as it was listed before (its children, removed with it, were listed too when selected).
        if (PassThru.IsPresent)
            Output.WriteObject(checkpoint);
    }
}
