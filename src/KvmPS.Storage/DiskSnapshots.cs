using KvmPS.Storage.Qcow2;

namespace KvmPS.Storage;

/// <summary>
/// Internal disk snapshots of images that are not open: for management (offline checkpoints,
/// removal, listing). Each call opens the image with QEMU-compatible locking (so it fails with
/// <see cref="ImageInUseException"/> while a VMM or QEMU has the image open for writing), does one
/// operation and closes it. The backing chain is not opened: snapshot operations never need it.
/// </summary>
public static class DiskSnapshots
{
    /// <summary>All snapshots of the image at <paramref name="path"/>; empty for raw images.</summary>
    /// <param name="path">The image.</param>
    /// <param name="forceShare">
    /// Read even while another process has the image open for writing (<c>qemu-img snapshot -l -U</c>).
    /// The answer may then be stale, or fail with <see cref="ImageCorruptException"/> if the table is being rewritten.
    /// </param>
    public static IReadOnlyList<DiskSnapshotInfo> List(string path, bool forceShare = false)
    {
        if (DiskImageFactory.DetectFormat(path) != DiskImageFormat.Qcow2)
        {
            return Array.Empty<DiskSnapshotInfo>();
        }
        using var image = DiskImageFactory.OpenQcow2ForSnapshots(path, readOnly: true, forceShare);
        return image.ListSnapshots();
    }

    /// <summary>The snapshot with this ID (first) or name, or null (also for raw images).</summary>
    public static DiskSnapshotInfo? Find(string path, string idOrName)
    {
        if (DiskImageFactory.DetectFormat(path) != DiskImageFormat.Qcow2)
        {
            return null;
        }
        using var image = DiskImageFactory.OpenQcow2ForSnapshots(path, readOnly: true);
        return image.FindSnapshot(idOrName);
    }

    /// <summary>True when the image has a snapshot with this ID or name.</summary>
    public static bool Has(string path, string idOrName) => Find(path, idOrName) is not null;

    /// <inheritdoc cref="ISnapshotableBlockBackend.CreateSnapshot"/>
    /// <exception cref="DiskSnapshotsNotSupportedException">The image is raw.</exception>
    public static DiskSnapshotInfo Create(string path, string id, string name, ulong vmClockNs = 0, ulong vmStateSizeBytes = 0)
    {
        using var image = OpenForChange(path);
        return image.CreateSnapshot(id, name, vmClockNs, vmStateSizeBytes);
    }

    /// <inheritdoc cref="ISnapshotableBlockBackend.RevertToSnapshot"/>
    /// <exception cref="DiskSnapshotsNotSupportedException">The image is raw.</exception>
    public static void Revert(string path, string idOrName)
    {
        using var image = OpenForChange(path);
        image.RevertToSnapshot(idOrName);
    }

    /// <inheritdoc cref="ISnapshotableBlockBackend.DeleteSnapshot"/>
    /// <exception cref="DiskSnapshotsNotSupportedException">The image is raw.</exception>
    public static void Delete(string path, string idOrName)
    {
        using var image = OpenForChange(path);
        image.DeleteSnapshot(idOrName);
    }

    /// <summary>
    /// The backend as an <see cref="ISnapshotableBlockBackend"/>, or a
    /// <see cref="DiskSnapshotsNotSupportedException"/> naming the disk (raw images).
    /// </summary>
    public static ISnapshotableBlockBackend RequireSnapshots(this IBlockBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        return backend as ISnapshotableBlockBackend
            ?? throw new DiskSnapshotsNotSupportedException(backend.Path, backend is Raw.RawImage ? DiskImageFormat.Raw : DiskImageFormat.Auto);
    }

    private static Qcow2Image OpenForChange(string path)
    {
        DiskImageFormat format = DiskImageFactory.DetectFormat(path);
        if (format != DiskImageFormat.Qcow2)
        {
            throw new DiskSnapshotsNotSupportedException(path, format);
        }
        return DiskImageFactory.OpenQcow2ForSnapshots(path, readOnly: false);
    }
}
