namespace KvmPS.Management.Snapshots;

/// <summary>
/// <see cref="IDiskSnapshots"/> on KvmPS.Storage's by-path helpers: each call opens the closed image with QEMU-compatible
/// locking (an image a VMM has open fails with ImageInUseException naming it), does one operation and closes it.
/// Errors are Storage's typed ones (DiskSnapshotNotFoundException, DiskSnapshotExistsException, …), naming disk and id.
/// </summary>
public sealed class QcowDiskSnapshots : IDiskSnapshots
{
    public void Create(string diskPath, string snapshotId, string name) => KvmPS.Storage.DiskSnapshots.Create(diskPath, snapshotId, name);

    public void Revert(string diskPath, string snapshotId) => KvmPS.Storage.DiskSnapshots.Revert(diskPath, snapshotId);

    public void Delete(string diskPath, string snapshotId) => KvmPS.Storage.DiskSnapshots.Delete(diskPath, snapshotId);

    /// <summary>By id only: a snapshot someone named like one of our ids is not ours.</summary>
    public bool Exists(string diskPath, string snapshotId) =>
        KvmPS.Storage.DiskSnapshots.List(diskPath).Any(s => s.Id == snapshotId);
}
