using KvmPS.Management.Definitions;

namespace KvmPS.Management.Pools;

/// <summary>What the store keeps of a pool (<c>&lt;store&gt;/pools/&lt;name&gt;.pool.json</c>).</summary>
/// <param name="Name">Pool name (<see cref="StoragePoolNames.IsValidPool"/>).</param>
/// <param name="Path">Absolute folder holding the pool's volumes.</param>
/// <param name="Autostart">Whether <c>kvmps autostart</c> checks (and re-creates a missing) folder before starting VMs.</param>
public sealed record StoragePoolDefinition(string Name, string Path, bool Autostart = false)
{
    /// <summary>The built-in <c>default</c> pool (not in a file; it cannot be removed).</summary>
    public bool IsDefault => Name == StoragePoolNames.DefaultPool;
}

/// <summary>Whether a pool's folder is there.</summary>
public enum StoragePoolState
{
    /// <summary>The folder exists and is usable.</summary>
    Active,
    /// <summary>The folder is gone (drift; re-created by the reconciler, <c>kvmps autostart</c> or New-KvmVolume in <c>default</c>).</summary>
    Missing,
    /// <summary>The folder exists but cannot be read.</summary>
    Inaccessible,
}

/// <summary>
/// A pool with its space: capacity, allocation (used) and available bytes of the file system holding its folder
/// (<c>statvfs</c>, as libvirt reports a directory pool), and how many volumes it holds. Sizes are 0 when the folder is missing.
/// </summary>
public sealed record StoragePoolInfo(
    string Name,
    string Path,
    bool Autostart,
    bool IsDefault,
    StoragePoolState State,
    long CapacityBytes,
    long AllocationBytes,
    long AvailableBytes,
    int VolumeCount)
{
    public override string ToString() => Name;
}

/// <summary>
/// A volume: a raw or qcow2 image directly in a pool folder. <see cref="CapacityBytes"/> is the size the guest sees,
/// <see cref="AllocationBytes"/> what the (sparse) file occupies on the host. <see cref="BackingVolume"/> names the
/// qcow2 backing file as stored in the image (a bare name for a volume of the same pool).
/// </summary>
public sealed record StorageVolumeInfo(
    string Pool,
    string Name,
    string Path,
    DiskFormat Format,
    long CapacityBytes,
    long AllocationBytes,
    string? BackingVolume,
    IReadOnlyList<string> UsedBy)
{
    public override string ToString() => Name;
}
