using KvmPS.Management.Store;

namespace KvmPS.Management.Pools;

/// <summary>
/// Where the store keeps pools: <c>&lt;store&gt;/pools/&lt;name&gt;.pool.json</c> (0600, written atomically under the
/// store lock) for each pool made with New-KvmStoragePool, plus the built-in <c>default</c> pool at
/// <c>&lt;store&gt;/pools/default</c>, which needs no file. Reads take no lock (files only change by rename).
/// Used by <see cref="VmStore.ResolveDiskPath"/> (pool references) and <see cref="AllowedPaths"/> (pool folders are allowed).
/// </summary>
public static class StoragePoolRegistry
{
    public const string DirectoryName = "pools";
    public const string FileSuffix = ".pool.json";

    public static string PoolsDirectory(string storeRoot) => Path.Combine(storeRoot, DirectoryName);

    /// <summary>The <c>default</c> pool's folder: <c>&lt;store&gt;/pools/default</c>.</summary>
    public static string DefaultPoolPath(string storeRoot) => Path.Combine(PoolsDirectory(storeRoot), StoragePoolNames.DefaultPool);

    public static string DefinitionPath(string storeRoot, string poolName) =>
        Path.Combine(PoolsDirectory(storeRoot), StoragePoolNames.ValidatePool(poolName) + FileSuffix);

    public static StoragePoolDefinition DefaultPool(string storeRoot) => new(StoragePoolNames.DefaultPool, DefaultPoolPath(storeRoot), Autostart: true);

    /// <summary>Every pool, <c>default</c> first, then by name.</summary>
    public static IReadOnlyList<StoragePoolDefinition> List(string storeRoot)
    {
        var result = new List<StoragePoolDefinition> { DefaultPool(storeRoot) };
        var directory = PoolsDirectory(storeRoot);
        if (!Directory.Exists(directory))
            return result;
        var names = Directory.EnumerateFiles(directory, "*" + FileSuffix)
            .Select(f => Path.GetFileName(f)[..^FileSuffix.Length])
            .Where(StoragePoolNames.IsValidPool)
            .Where(n => n != StoragePoolNames.DefaultPool)
            .Order(StringComparer.Ordinal);
        foreach (var name in names)
            if (TryGet(storeRoot, name) is { } pool)
                result.Add(pool);
        return result;
    }

    /// <summary>The pool called <paramref name="poolName"/>, or null.</summary>
    public static StoragePoolDefinition? TryGet(string storeRoot, string poolName)
    {
        StoragePoolNames.ValidatePool(poolName);
        if (poolName == StoragePoolNames.DefaultPool)
            return DefaultPool(storeRoot);
        var file = DefinitionPath(storeRoot, poolName);
        byte[] json;
        try
        {
            json = File.ReadAllBytes(file);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        var pool = StoragePoolJson.Deserialize(json, file);
        if (pool.Name != poolName)
            throw new VmStoreCorruptException(file, $"it defines pool '{pool.Name}' but is stored as '{poolName}'");
        return pool;
    }

    public static StoragePoolDefinition Get(string storeRoot, string poolName) =>
        TryGet(storeRoot, poolName) ?? throw new StoragePoolNotFoundException(poolName, storeRoot);

    /// <summary>The file a pool reference names today: <c>&lt;pool folder&gt;/&lt;volume&gt;</c>. Throws if the pool does not exist.</summary>
    public static string ResolveVolumePath(string storeRoot, PoolVolumeReference reference) =>
        Path.Combine(Get(storeRoot, reference.Pool).Path, reference.Volume);

    /// <summary>Writes (creates or replaces) a pool file. Caller holds the store lock.</summary>
    internal static void Write(string storeRoot, StoragePoolDefinition pool)
    {
        StoreConfinement.CreateDirectory(PoolsDirectory(storeRoot));
        DurableFile.WriteAtomically(DefinitionPath(storeRoot, pool.Name), StoragePoolJson.Serialize(pool));
    }

    /// <summary>Deletes a pool file. Caller holds the store lock.</summary>
    internal static void Delete(string storeRoot, string poolName)
    {
        File.Delete(DefinitionPath(storeRoot, poolName));
        DurableFile.FsyncDirectory(PoolsDirectory(storeRoot));
    }
}
