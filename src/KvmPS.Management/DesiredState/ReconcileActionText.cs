using KvmPS.Management.Definitions;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// A planned step as a confirmation prompt puts it: an action ("Create VM", "Change VM settings (VcpuCount 1 -> 2)")
/// on a target ("web1 (2 vCPUs, 256 MiB)", "db"). Split this way, "Performing the operation … on target …"
/// reads as one sentence for every kind (the <see cref="ReconcileAction.Description"/> is a whole sentence).
/// </summary>
public static class ReconcileActionText
{
    public static string Verb(this ReconcileAction action)
    {
        ArgumentNullException.ThrowIfNull(action);
        return action.Kind switch
        {
            ReconcileActionKind.Create => "Create VM",
            ReconcileActionKind.Update => $"Change VM settings ({Changes(action)})",
            ReconcileActionKind.UpdateLive => $"Change VM settings while it runs ({Changes(action)})",
            ReconcileActionKind.UpdateNeedsRestart => $"Change VM settings, effective at its next restart ({Changes(action)})",
            ReconcileActionKind.Stop => "Stop VM",
            ReconcileActionKind.Start => "Start VM",
            ReconcileActionKind.Suspend => "Suspend VM",
            ReconcileActionKind.Resume => "Resume VM",
            ReconcileActionKind.Remove => "Remove VM (its disks are kept)",
            ReconcileActionKind.CreateStoragePool => "Create storage pool",
            ReconcileActionKind.UpdateStoragePool => $"Change storage pool settings ({Changes(action)})",
            ReconcileActionKind.CreateStoragePoolFolder => "Re-create storage pool folder",
            ReconcileActionKind.RemoveStoragePool => "Remove storage pool (its folder and volumes stay)",
            ReconcileActionKind.CreateNetwork => "Create network",
            ReconcileActionKind.UpdateNetwork => $"Change network settings ({Changes(action)})",
            ReconcileActionKind.StartNetwork => action.Changes.Count > 0 && action.Changes[0].Actual?.StartsWith("Degraded", StringComparison.Ordinal) == true ? "Repair network" : "Start network",
            ReconcileActionKind.RemoveNetwork => "Stop and remove network",
            ReconcileActionKind.SetSriovVfCount => $"Set SR-IOV VF count ({Changes(action)})",
            _ => action.Description,
        };
    }

    public static string Target(this ReconcileAction action)
    {
        ArgumentNullException.ThrowIfNull(action);
        return action.Kind == ReconcileActionKind.Create && action.Definition is { } definition ? DisplayText.Vm(definition) : action.VmName;
    }

    private static string Changes(ReconcileAction action) =>
        string.Join(", ", action.Changes.Select(c => $"{c.Property} {DisplayText.Value(c.Property, c.Actual)} -> {DisplayText.Value(c.Property, c.Expected)}"));
}
