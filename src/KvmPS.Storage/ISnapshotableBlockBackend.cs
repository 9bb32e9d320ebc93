namespace KvmPS.Storage;

/// <summary>
/// A block backend whose image holds internal snapshots (qcow2): point-in-time copies of the whole
/// disk stored in the image itself, sharing unchanged clusters with the live disk.
/// </summary>
/// <remarks>
/// The VMM takes a snapshot while the VM is paused and no block request is in flight, so the disk
/// snapshot and the saved device state describe the same instant. Each call is durable when it
/// returns (structures written and synced before the header switches to them). IDs and names are
/// matched exactly; a lookup by "ID or name" tries the IDs first, as QEMU does.
/// Raw images do not implement this; <see cref="DiskSnapshots.RequireSnapshots"/> turns that into a
/// <see cref="DiskSnapshotsNotSupportedException"/> naming the disk.
/// </remarks>
public interface ISnapshotableBlockBackend : IBlockBackend
{
    /// <summary>Snapshots the current disk contents.</summary>
    /// <param name="id">Unique ID (non-empty, at most 65535 UTF-8 bytes).</param>
    /// <param name="name">Name (non-empty, at most 65535 UTF-8 bytes); may equal <paramref name="id"/>.</param>
    /// <param name="vmClockNs">Guest run time at this instant, recorded for listings.</param>
    /// <param name="vmStateSizeBytes">Size of the VM state kept with the snapshot (recorded only: KvmPS keeps VM state outside the image).</param>
    /// <exception cref="DiskSnapshotExistsException">The ID or name is already used by another snapshot.</exception>
    /// <exception cref="DiskImageReadOnlyException">The image is open read-only.</exception>
    /// <exception cref="ImageCorruptException">The image's metadata does not allow it (e.g. refcount overflow); nothing was changed.</exception>
    DiskSnapshotInfo CreateSnapshot(string id, string name, ulong vmClockNs = 0, ulong vmStateSizeBytes = 0);

    /// <summary>All snapshots in table order.</summary>
    IReadOnlyList<DiskSnapshotInfo> ListSnapshots();

    /// <summary>The snapshot with this ID (first) or name, or null.</summary>
    DiskSnapshotInfo? FindSnapshot(string idOrName);

    /// <summary>True when a snapshot has this ID or name.</summary>
    bool HasSnapshot(string idOrName);

    /// <summary>
    /// Makes the disk read as it did when the snapshot was taken (its size included); the snapshot is
    /// kept. Clusters only the discarded current state used are freed. Only while the guest does no I/O.
    /// </summary>
    /// <exception cref="DiskSnapshotNotFoundException">No snapshot has this ID or name.</exception>
    void RevertToSnapshot(string idOrName);

    /// <summary>Deletes the snapshot and frees the clusters only it used.</summary>
    /// <exception cref="DiskSnapshotNotFoundException">No snapshot has this ID or name.</exception>
    void DeleteSnapshot(string idOrName);
}
