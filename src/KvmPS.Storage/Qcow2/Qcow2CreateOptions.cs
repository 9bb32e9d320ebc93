namespace KvmPS.Storage.Qcow2;

/// <summary>Parameters for <see cref="DiskImageFactory.CreateQcow2"/>.</summary>
public sealed record Qcow2CreateOptions
{
    /// <summary>Cluster size; a power of two from 512 bytes to 2 MiB. Default 64 KiB like qemu-img.</summary>
    public long ClusterSizeBytes { get; init; } = 64 * 1024;

    /// <summary>Refcount entry width: 1, 2, 4, 8, 16, 32 or 64. Default 16 like qemu-img.</summary>
    public int RefcountBits { get; init; } = 16;

    /// <summary>Backing file name stored in the image; relative names resolve against the new image's directory.</summary>
    public string? BackingFile { get; init; }

    /// <summary>Backing file format recorded in the image; probed from the file when null.</summary>
    public DiskImageFormat BackingFormat { get; init; } = DiskImageFormat.Auto;
}
