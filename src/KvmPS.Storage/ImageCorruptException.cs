namespace KvmPS.Storage;

/// <summary>The image's metadata is malformed or inconsistent (bad header, truncated tables, ...).</summary>
public sealed class ImageCorruptException : DiskImageException
{
    public ImageCorruptException(string path, string message, ulong? fileOffset = null)
        : base(path, message)
    {
        FileOffset = fileOffset;
    }

    /// <summary>Offset in the image file of the offending structure or reference, when known.</summary>
    public ulong? FileOffset { get; }
}
