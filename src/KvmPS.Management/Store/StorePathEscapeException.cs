namespace KvmPS.Management.Store;

/// <summary>A path derived from a name or given relative to the store would resolve outside it.</summary>
public sealed class StorePathEscapeException : VmStoreException
{
    public StorePathEscapeException(string path, string allowedDirectory)
        : base($"Path '{path}' escapes the store directory '{allowedDirectory}'")
    {
        Path = path;
        AllowedDirectory = allowedDirectory;
    }

    public string Path { get; }
    public string AllowedDirectory { get; }
}
