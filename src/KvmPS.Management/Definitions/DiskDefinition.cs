namespace KvmPS.Management.Definitions;

/// <summary>
/// A virtual disk. A relative <see cref="Path"/> (or <see cref="BackingImagePath"/>) is relative to the VM's
/// disk directory in the store and may not escape it; absolute paths point anywhere on the host. A disk given by
/// storage pool and volume keeps <c>pool://&lt;pool&gt;/&lt;volume&gt;</c> in <see cref="Path"/> (see <see cref="Pool"/>,
/// <see cref="Volume"/>; resolved by the store at each use, docs/pools.md).
/// </summary>
/// <param name="Path">Image file; a bare file name lands in the VM's disk directory.</param>
/// <param name="SizeBytes">Size to create the image with; null = use an existing image as is.</param>
/// <param name="BackingImagePath">qcow2 backing file (copy-on-write base); only valid for qcow2.</param>
public sealed record DiskDefinition(
    string Path,
    DiskFormat Format = DiskFormat.Raw,
    long? SizeBytes = null,
    bool ReadOnly = false,
    string? BackingImagePath = null)
{
    /// <summary>The pool of a disk given by pool and volume (<see cref="Pools.PoolVolumeReference"/>), else null.</summary>
    public string? Pool => Pools.PoolVolumeReference.IsReference(Path) ? Pools.PoolVolumeReference.Parse(Path)?.Pool : null;

    /// <summary>The volume of a disk given by pool and volume, else null.</summary>
    public string? Volume => Pools.PoolVolumeReference.IsReference(Path) ? Pools.PoolVolumeReference.Parse(Path)?.Volume : null;

    /// <summary>Block devices address 512-byte sectors, so images are sized in whole sectors.</summary>
    public const int SectorBytes = 512;

    /// <summary>"data.qcow2 (qcow2, 64 MiB, read-only, backed by base.raw)".</summary>
    public override string ToString()
    {
        var details = new List<string> { Format.ToString().ToLowerInvariant() };
        if (SizeBytes is { } size)
            details.Add(DisplayText.Bytes(size));
        if (ReadOnly)
            details.Add("read-only");
        if (BackingImagePath is not null)
            details.Add("backed by " + BackingImagePath);
        return $"{Path} ({string.Join(", ", details)})";
    }

    /// <summary>The format when none is given: qcow2 for a <c>*.qcow2</c> name or a backing image (only qcow2 has one), raw otherwise.</summary>
    public static DiskFormat DefaultFormat(string? path, string? backingImagePath) =>
        backingImagePath is not null || (path is not null && path.EndsWith(".qcow2", StringComparison.OrdinalIgnoreCase))
            ? DiskFormat.Qcow2
            : DiskFormat.Raw;
}
