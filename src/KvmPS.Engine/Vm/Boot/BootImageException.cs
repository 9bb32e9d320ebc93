namespace KvmPS.Vm.Boot;

/// <summary>A kernel, initrd or firmware image that cannot be booted; names the file and says why.</summary>
public sealed class BootImageException : Exception
{
    public string ImagePath { get; }
    public BootImageException(string imagePath, string reason, Exception? inner = null) : base($"{imagePath}: {reason}", inner) => ImagePath = imagePath;
}
