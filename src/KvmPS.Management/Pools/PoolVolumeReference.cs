namespace KvmPS.Management.Pools;

/// <summary>
/// A disk given by pool and volume (<c>Pool = 'default'; Volume = 'web1.qcow2'</c>) is kept in the definition as such,
/// not as the path it has today: <see cref="KvmPS.Management.Definitions.DiskDefinition.Path"/> holds
/// <c>pool://&lt;pool&gt;/&lt;volume&gt;</c>, vm.json stores <c>Pool</c> and <c>Volume</c>, and the store resolves the
/// reference to the pool's current folder whenever it needs the file (validation, start, hot-plug, snapshots). So a
/// pool whose folder moved (Remove-KvmStoragePool, New-KvmStoragePool on the new folder) keeps its VMs working.
/// </summary>
public readonly record struct PoolVolumeReference(string Pool, string Volume)
{
    public const string Scheme = "pool://";

    /// <summary>"pool://default/web1.qcow2".</summary>
    public override string ToString() => Scheme + Pool + "/" + Volume;

    public static string Format(string pool, string volume) => new PoolVolumeReference(pool, volume).ToString();

    /// <summary>True when <paramref name="path"/> is a pool reference (it need not be valid: see <see cref="Parse"/>).</summary>
    public static bool IsReference(string? path) => path is not null && path.StartsWith(Scheme, StringComparison.Ordinal);

    /// <summary>Splits "pool://P/V"; null for any other path. Throws for a reference with an invalid pool or volume name.</summary>
    public static PoolVolumeReference? Parse(string? path)
    {
        if (!IsReference(path))
            return null;
        var rest = path![Scheme.Length..];
        var slash = rest.IndexOf('/');
        var pool = slash < 0 ? rest : rest[..slash];
        var volume = slash < 0 ? "" : rest[(slash + 1)..];
        StoragePoolNames.ValidatePool(pool);
        StoragePoolNames.ValidateVolume(pool, volume, "Volume");
        return new PoolVolumeReference(pool, volume);
    }
}
