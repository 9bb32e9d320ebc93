namespace KvmPS.Storage;

/// <summary>Base class for errors concerning one disk image file; <see cref="Path"/> names it.</summary>
public class DiskImageException : Exception
{
    public DiskImageException(string path, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Path = path;
    }

    /// <summary>The image file the error concerns.</summary>
    public string Path { get; }
}
