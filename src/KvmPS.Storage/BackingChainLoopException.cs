namespace KvmPS.Storage;

/// <summary>A backing-file chain refers back to an image already in the chain, or is too deep.</summary>
public sealed class BackingChainLoopException : DiskImageException
{
    public BackingChainLoopException(string path, IReadOnlyList<string> chain, string message)
        : base(path, message)
    {
        Chain = chain;
    }

    /// <summary>The chain from the top image down to the image that closed the loop.</summary>
    public IReadOnlyList<string> Chain { get; }
}
