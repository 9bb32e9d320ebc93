using KvmPS.Management.Lifecycle;

namespace KvmPS.Management.Snapshots;

/// <summary>The VM has no checkpoint of that name.</summary>
public sealed class SnapshotNotFoundException : VmManagementException
{
    public SnapshotNotFoundException(string vmName, string snapshotName)
        : base(vmName, $"VM '{vmName}' has no checkpoint named '{snapshotName}'") => SnapshotName = snapshotName;

    public string SnapshotName { get; }
}

/// <summary>A checkpoint of that name already exists for the VM (names are unique per VM, so they can select one).</summary>
public sealed class SnapshotAlreadyExistsException : VmManagementException
{
    public SnapshotAlreadyExistsException(string vmName, string snapshotName)
        : base(vmName, $"VM '{vmName}' already has a checkpoint named '{snapshotName}'; choose another name or remove it first") => SnapshotName = snapshotName;

    public string SnapshotName { get; }
}

/// <summary>A checkpoint's or saved state's metadata file cannot be read or makes no sense.</summary>
public sealed class SnapshotMetadataCorruptException : VmManagementException
{
    public SnapshotMetadataCorruptException(string vmName, string path, string reason, Exception? inner = null)
        : base(vmName, $"VM '{vmName}': checkpoint metadata '{path}' is corrupt: {reason}", inner)
    {
        Path = path;
        Reason = reason;
    }

    public string Path { get; }
    public string Reason { get; }
}

/// <summary>
/// A checkpoint needs every writable disk to be qcow2 (internal snapshots keep the disk consistent with the
/// checkpoint); a raw disk moves on. Refused unless the caller accepts that (<c>-AllowRawDisks</c>).
/// </summary>
public sealed class RawDiskSnapshotException : VmManagementException
{
    public RawDiskSnapshotException(string vmName, string diskPath)
        : base(vmName, $"VM '{vmName}': disk '{diskPath}' is raw and cannot be checkpointed with the VM; convert it to qcow2, or accept that it is not restored with the checkpoint (-AllowRawDisks / --allow-raw-disks)")
        => DiskPath = diskPath;

    public string DiskPath { get; }
}

/// <summary>An exported VM folder cannot be imported (missing or unreadable definition, bad layout); names the path.</summary>
public sealed class VmImportException : VmManagementException
{
    public VmImportException(string vmName, string path, string reason, Exception? inner = null)
        : base(vmName, $"Cannot import '{path}': {reason}", inner)
    {
        Path = path;
        Reason = reason;
    }

    public string Path { get; }
    public string Reason { get; }
}

/// <summary>An export target exists already, or the VM cannot be exported as defined; names the path.</summary>
public sealed class VmExportException : VmManagementException
{
    public VmExportException(string vmName, string path, string reason, Exception? inner = null)
        : base(vmName, $"VM '{vmName}': cannot export to '{path}': {reason}", inner)
    {
        Path = path;
        Reason = reason;
    }

    public string Path { get; }
    public string Reason { get; }
}
