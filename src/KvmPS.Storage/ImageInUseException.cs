namespace KvmPS.Storage;

/// <summary>Another process (QEMU or KvmPS) holds a conflicting QEMU-style lock on the image.</summary>
public sealed class ImageInUseException : DiskImageException
{
    public ImageInUseException(string path, string conflictingPermission)
        : base(path, $"Disk image '{path}' is in use: another process (a QEMU or KvmPS instance) " +
                     $"holds a conflicting \"{conflictingPermission}\" lock on it. Stop that process or open the image read-only.")
    {
        ConflictingPermission = conflictingPermission;
    }

    /// <summary>The QEMU permission name that conflicted ("write", "consistent read", ...).</summary>
    public string ConflictingPermission { get; }
}
