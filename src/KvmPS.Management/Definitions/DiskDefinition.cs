namespace KvmPS.Management.Definitions;

/// <summary>
/// A virtual disk. A relative <see cref="Path"/> (or <see cref="BackingImagePath"/>) is relative to the VM's
/// disk directory in the store and may not escape it; absolute paths point anywhere on the host.
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
    /// <summary>Block devices address 512-byte sectors, so images are sized in whole sectors.</summary>
    public const int SectorBytes = 512;
}
