namespace KvmPS.Storage;

/// <summary>
/// One internal snapshot of a disk image, with the fields <c>qemu-img snapshot -l</c> shows.
/// </summary>
/// <param name="Id">Unique ID string (QEMU numbers its own "1", "2", ...; KvmPS uses the VM snapshot's ID).</param>
/// <param name="Name">Name (QEMU's "TAG").</param>
/// <param name="CreatedUtc">Wall-clock time the snapshot was taken (UTC, 100 ns resolution).</param>
/// <param name="VmClockNs">Guest run time at the snapshot in nanoseconds (0 for snapshots taken offline).</param>
/// <param name="DiskSizeBytes">Virtual disk size when the snapshot was taken; reverting restores it.</param>
/// <param name="VmStateSizeBytes">Size of the VM state saved with the snapshot (0 for disk-only snapshots).</param>
public sealed record DiskSnapshotInfo(
    string Id,
    string Name,
    DateTime CreatedUtc,
    ulong VmClockNs,
    ulong DiskSizeBytes,
    ulong VmStateSizeBytes);
