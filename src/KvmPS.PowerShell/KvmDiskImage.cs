using KvmPS.Management.Definitions;

namespace KvmPS.PowerShell;

/// <summary>A disk image created by New-KvmDiskImage.</summary>
public sealed class KvmDiskImage
{
    public required string Path { get; init; }
    public required DiskFormat Format { get; init; }

    /// <summary>Virtual size the guest sees.</summary>
    public required long SizeBytes { get; init; }

    /// <summary>Space the (sparse) file uses on the host right after creation.</summary>
    public long FileSizeBytes { get; init; }

    public string? BackingPath { get; init; }

    public override string ToString() => Path;
}
