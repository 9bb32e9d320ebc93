using KvmPS.Contract;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Snapshots;

/// <summary>
/// The VMM's <c>snapshot.create</c> as management uses it (the request and reply records are the shared contract's):
/// full memory unless an incremental checkpoint asks for a diff, a reply timeout that grows with the guest's memory.
/// </summary>
public static class VmmSnapshotClient
{
    /// <summary>Time to allow for a snapshot of <paramref name="memoryBytes"/>: 30 s plus 1 s per 32 MiB (a slow shared disk writes ~40 MB/s).</summary>
    public static TimeSpan ReplyTimeout(long memoryBytes) => TimeSpan.FromSeconds(30 + memoryBytes / (32L << 20));

    /// <param name="path">Must not exist yet or be an empty directory.</param>
    /// <param name="resume">False: the VM stays paused after the snapshot (Save-KvmVm stops it next).</param>
    /// <param name="snapshotDisks">True: each writable qcow2 disk gets an internal snapshot <paramref name="snapshotId"/> at the same
    /// paused instant and a writable raw disk fails the request; false: disks are not touched.</param>
    /// <param name="memory">Full, or Diff: only the pages written since the VMM's previous snapshot (an incremental checkpoint).</param>
    public static SnapshotCreateReply Create(VmmClient client, string path, bool resume, bool snapshotDisks, string? snapshotId, TimeSpan timeout,
        SnapshotMemory memory = SnapshotMemory.Full)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.CreateSnapshot(new SnapshotCreateRequest
        {
            Path = path,
            Memory = memory,
            Resume = resume,
            Disks = snapshotDisks ? SnapshotDisks.Snapshot : SnapshotDisks.Ignore,
            SnapshotId = snapshotId,
        }, timeout);
    }
}
