using KvmPS.Management.Snapshots;

namespace KvmPS.Management.Tests.Snapshots;

/// <summary>
/// Internal disk snapshots kept in memory, for management tests that are about the store and state transitions
/// rather than qcow2 (QcowDiskSnapshots has its own tests on real images). Fails like the real one: unknown id → error.
/// </summary>
internal sealed class RecordingDiskSnapshots : IDiskSnapshots
{
    public Dictionary<string, HashSet<string>> Ids { get; } = new();
    public List<string> Calls { get; } = new();

    public void Create(string diskPath, string snapshotId, string name)
    {
        Calls.Add($"create {diskPath} {snapshotId}");
        if (!File.Exists(diskPath))
            throw new FileNotFoundException("no disk image", diskPath);
        if (!Ids.TryGetValue(diskPath, out var set))
            Ids[diskPath] = set = new HashSet<string>();
        if (!set.Add(snapshotId))
            throw new InvalidOperationException($"{diskPath} already has snapshot {snapshotId}");
    }

    public void Revert(string diskPath, string snapshotId)
    {
        Calls.Add($"revert {diskPath} {snapshotId}");
        if (!Exists(diskPath, snapshotId))
            throw new InvalidOperationException($"{diskPath} has no snapshot {snapshotId}");
    }

    public void Delete(string diskPath, string snapshotId)
    {
        Calls.Add($"delete {diskPath} {snapshotId}");
        if (!Exists(diskPath, snapshotId))
            throw new InvalidOperationException($"{diskPath} has no snapshot {snapshotId}");
        Ids[diskPath].Remove(snapshotId);
    }

    public bool Exists(string diskPath, string snapshotId) => Ids.TryGetValue(diskPath, out var set) && set.Contains(snapshotId);
}
