namespace KvmPS.Storage;

/// <summary>Base class for errors about one internal snapshot of one image; names both.</summary>
public class DiskSnapshotException : DiskImageException
{
    public DiskSnapshotException(string path, string snapshotId, string message, Exception? innerException = null)
        : base(path, message, innerException)
    {
        SnapshotId = snapshotId;
    }

    /// <summary>The snapshot ID (or name) the failing request named.</summary>
    public string SnapshotId { get; }
}

/// <summary>No snapshot of the image has the requested ID or name.</summary>
public sealed class DiskSnapshotNotFoundException : DiskSnapshotException
{
    public DiskSnapshotNotFoundException(string path, string snapshotId, IReadOnlyList<string> existingIds)
        : base(path, snapshotId,
            $"Disk image '{path}' has no internal snapshot with ID or name '{snapshotId}'" +
            (existingIds.Count == 0 ? " (it has no snapshots)." : $" (snapshot IDs: {string.Join(", ", existingIds.Take(20))}{(existingIds.Count > 20 ? ", ..." : "")})."))
    {
    }
}

/// <summary>A new snapshot's ID or name is already used by a snapshot of the image.</summary>
public sealed class DiskSnapshotExistsException : DiskSnapshotException
{
    public DiskSnapshotExistsException(string path, string snapshotId, string existingId, string existingName)
        : base(path, snapshotId,
            $"Disk image '{path}' already has an internal snapshot with ID or name '{snapshotId}' " +
            $"(ID '{existingId}', name '{existingName}'); snapshot IDs and names must be unique.")
    {
        ExistingId = existingId;
    }

    /// <summary>ID of the snapshot that is in the way.</summary>
    public string ExistingId { get; }
}

/// <summary>The image format (raw) cannot hold internal snapshots.</summary>
public sealed class DiskSnapshotsNotSupportedException : DiskImageException
{
    public DiskSnapshotsNotSupportedException(string path, DiskImageFormat format)
        : base(path, $"Disk image '{path}' is {(format == DiskImageFormat.Raw ? "raw" : "not qcow2")}; only qcow2 images can take internal snapshots " +
                     "(convert it with 'qemu-img convert -O qcow2', or leave the disk out of the snapshot).")
    {
        Format = format;
    }

    /// <summary>The image's format (<see cref="DiskImageFormat.Auto"/> when the backend is neither raw nor qcow2).</summary>
    public DiskImageFormat Format { get; }
}
