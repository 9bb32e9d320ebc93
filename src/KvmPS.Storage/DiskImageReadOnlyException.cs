namespace KvmPS.Storage;

/// <summary>A modifying request was made on an image opened read-only.</summary>
public sealed class DiskImageReadOnlyException : DiskImageException
{
    public DiskImageReadOnlyException(string path)
        : base(path, $"Disk image '{path}' is open read-only; writes, discards and snapshot changes are refused.")
    {
    }
}
