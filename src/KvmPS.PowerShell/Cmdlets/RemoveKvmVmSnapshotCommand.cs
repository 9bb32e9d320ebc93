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
}
