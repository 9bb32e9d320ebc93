namespace KvmPS.Management.Store;

/// <summary>A file in the store cannot be read as what it should be (e.g. vm.json is not a valid definition).</summary>
public sealed class VmStoreCorruptException : VmStoreException
{
    public VmStoreCorruptException(string path, string reason, Exception? inner = null)
        : base($"Store file '{path}' is corrupt: {reason}", inner) => Path = path;

    public string Path { get; }
}
