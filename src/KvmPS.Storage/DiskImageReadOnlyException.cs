namespace KvmPS.Storage;

/// <summary>A modifying request was made on an image opened read-only.</summary>
public sealed class DiskImageReadOnlyException : DiskImageException
{
    public DiskImageReadOnlyException(string path)
        : base(path, $"Disk image '{path}' is open read-only; writes, discards and snapshot changes are refused.")
    {
    }

    /// <param name="path">The image.</param>
    /// <param name="operation">What was refused, naming its target (e.g. "create snapshot 's1'").</param>
    public DiskImageReadOnlyException(string path, string operation)
        : base(path, $"Disk image '{path}' is open read-only; cannot {operation}.")
    {
    }
}
