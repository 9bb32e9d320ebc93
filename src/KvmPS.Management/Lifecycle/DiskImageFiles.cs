using KvmPS.Management.Definitions;
using KvmPS.Management.Pools;

namespace KvmPS.Management.Lifecycle;

/// <summary>A disk image made by <see cref="DiskImageFiles"/>: what New-KvmDiskImage and <c>kvmps disk create</c> report.</summary>
public sealed record CreatedDiskImage(string Path, DiskFormat Format, long SizeBytes, long FileSizeBytes, string? BackingPath);

/// <summary>
/// A disk image request that cannot be made as given; <see cref="Input"/> names the input (SizeBytes, BackingPath, Path)
/// in New-KvmDiskImage's terms, which the CLI turns into its option name.
/// </summary>
public sealed class DiskImageRequestException(string input, object? value, string message) : ArgumentException(message)
{
    public string Input { get; } = input;
    public object? Value { get; } = value;
}

/// <summary>
/// Standalone disk images (New-KvmDiskImage, <c>kvmps disk create</c>): a sparse raw or qcow2 file at a path, or a
/// volume of a storage pool, checked the same way for both front ends. Never overwrites a file.
/// </summary>
public static class DiskImageFiles
{
    /// <summary>
    /// Checks a request for an image at <paramref name="path"/> (already absolute) and returns its format: a size or a
    /// backing image is needed, a backing image needs qcow2, the size is whole sectors.
    /// </summary>
    public static DiskFormat Check(string path, long? sizeBytes, DiskFormat? format, string? backingPath)
    {
        var resolved = format ?? DiskDefinition.DefaultFormat(path, backingPath);
        if (sizeBytes is null && backingPath is null)
            throw new DiskImageRequestException("SizeBytes", null, "Give a size, or a backing image to take its size.");
        if (resolved == DiskFormat.Raw && backingPath is not null)
            throw new DiskImageRequestException("BackingPath", backingPath, "a backing image needs the qcow2 format");
        if (sizeBytes is { } s && (s < DiskDefinition.SectorBytes || s % DiskDefinition.SectorBytes != 0))
            throw new DiskImageRequestException("SizeBytes", s, $"must be a positive multiple of {DiskDefinition.SectorBytes} (got {s})");
        return resolved;
    }

    /// <summary>Creates the image <see cref="Check"/> accepted; an existing file is an <see cref="IOException"/> naming it.</summary>
    public static CreatedDiskImage Create(string path, long? sizeBytes, DiskFormat? format, string? backingPath)
    {
        var resolved = Check(path, sizeBytes, format, backingPath);
        StorageDiskImageCreator.Create(path, resolved, sizeBytes ?? 0, backingPath);
        return new CreatedDiskImage(path, resolved, sizeBytes ?? ReadVirtualSize(path), new FileInfo(path).Length, backingPath);
    }

    /// <summary>The same image as a volume of <paramref name="pool"/> (New-KvmVolume's creation), reported as a disk image.</summary>
    public static CreatedDiskImage CreateInPool(StoragePoolManager pools, string pool, string volume, long? sizeBytes, DiskFormat? format, string? backingVolume)
    {
        if (StoragePoolNames.VolumeNameProblem(volume) is { } problem)
            throw new DiskImageRequestException("Path", volume, $"with a pool this is a volume name in pool '{pool}': '{volume}' {problem}");
        var created = pools.CreateVolume(pool, volume, sizeBytes, format, backingVolume);
        return new CreatedDiskImage(created.Path, created.Format, created.CapacityBytes, new FileInfo(created.Path).Length,
            created.BackingVolume is null ? null : Path.Combine(Path.GetDirectoryName(created.Path)!, created.BackingVolume));
    }

    /// <summary>The path a pool volume would have (for confirmation messages before it exists).</summary>
    public static string PoolVolumePath(StoragePoolManager pools, string pool, string volume)
    {
        if (StoragePoolNames.VolumeNameProblem(volume) is { } problem)
            throw new DiskImageRequestException("Path", volume, $"with a pool this is a volume name in pool '{pool}': '{volume}' {problem}");
        return pools.VolumePath(pool, volume);
    }

    private static long ReadVirtualSize(string path)
    {
        using var image = KvmPS.Storage.DiskImageFactory.Open(path, KvmPS.Storage.DiskImageFormat.Auto, readOnly: true);
        return (long)image.SizeBytes;
    }
}
