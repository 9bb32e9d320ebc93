using KvmPS.Management.Pools;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// Drift and steps for a manifest's <c>StoragePools</c> (docs/pools.md). Pure, like <see cref="ReconcilePlanner"/>:
/// pools to create or change (and missing folders to re-create) are planned before every VM step, pools to forget
/// after them, so VMs find their pools and a pool is only forgotten once the VMs that used it are gone.
/// Drift names the pool as <c>StoragePools.&lt;name&gt;</c> with the property (Ensure, Path, Autostart, Folder).
/// </summary>
public static class StoragePoolPlanner
{
    /// <summary>The drift prefix of pool entries ("StoragePools.lab").</summary>
    public static string Subject(string pool) => "StoragePools." + pool;

    /// <param name="actual">The pools there are now, by name, with their state (the folder may be missing).</param>
    /// <returns>Steps before the VMs', steps after the VMs', and the drift.</returns>
    public static (List<ReconcileAction> Before, List<ReconcileAction> After, List<Drift> Drifts) Plan(
        IReadOnlyList<DesiredStoragePool> desired, IReadOnlyDictionary<string, StoragePoolInfo> actual)
    {
        var before = new List<ReconcileAction>();
        var after = new List<ReconcileAction>();
        var drifts = new List<Drift>();
        var none = Array.Empty<Drift>();
        foreach (var pool in desired)
        {
            var subject = Subject(pool.Name);
            actual.TryGetValue(pool.Name, out var current);
            if (pool.Ensure == VmEnsure.Absent)
            {
                if (current is null)
                    continue;
                drifts.Add(new Drift(subject, "Ensure", "Absent", "Present"));
                after.Add(new ReconcileAction(ReconcileActionKind.RemoveStoragePool, pool.Name, $"Remove storage pool '{pool.Name}' (its folder and volumes stay)", "Ensure is 'Absent'", none));
                continue;
            }
            if (current is null)
            {
                var drift = new Drift(subject, "Ensure", "Present", "Absent");
                drifts.Add(drift);
                before.Add(new ReconcileAction(ReconcileActionKind.CreateStoragePool, pool.Name, $"Create storage pool '{pool.Name}' on '{pool.Path}'", "it does not exist", [drift]));
                continue;
            }
            var changes = new List<Drift>();
            if (!string.Equals(current.Path, pool.Path, StringComparison.Ordinal))
                changes.Add(new Drift(subject, "Path", pool.Path, current.Path));
            if (pool.Autostart is { } autostart && autostart != current.Autostart)
                changes.Add(new Drift(subject, "Autostart", autostart.ToString(), current.Autostart.ToString()));
            drifts.AddRange(changes);
            if (changes.Count > 0)
                before.Add(new ReconcileAction(ReconcileActionKind.UpdateStoragePool, pool.Name,
                    $"Update storage pool '{pool.Name}' ({string.Join(", ", changes.Select(c => $"{c.Property} {c.Actual} -> {c.Expected}"))})", "the stored pool differs", changes));
            else if (current.State == StoragePoolState.Missing)
            {
                var drift = new Drift(subject, "Folder", "present", "missing");
                drifts.Add(drift);
                before.Add(new ReconcileAction(ReconcileActionKind.CreateStoragePoolFolder, pool.Name, $"Re-create the folder '{current.Path}' of storage pool '{pool.Name}'", "the pool's folder is missing", [drift]));
            }
        }
        return (before, after, drifts);
    }
}
