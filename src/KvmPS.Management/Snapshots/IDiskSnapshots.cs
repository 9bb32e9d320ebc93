namespace KvmPS.Management.Snapshots;

/// <summary>
/// Internal snapshots of closed qcow2 images, for checkpoints of a VM that is off and for removing and reverting
/// checkpoints while no VMM has the disks open. The real implementation is <see cref="QcowDiskSnapshots"/> (KvmPS.Storage).
/// </summary>
public interface IDiskSnapshots
{
    void Create(string diskPath, string snapshotId, string name);
    void Revert(string diskPath, string snapshotId);
    void Delete(string diskPath, string snapshotId);
    bool Exists(string diskPath, string snapshotId);
}
