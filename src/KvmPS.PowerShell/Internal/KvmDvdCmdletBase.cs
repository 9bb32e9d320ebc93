using KvmPS.Management.Pools;

namespace KvmPS.PowerShell.Internal;

/// <summary>Shared by the DVD cmdlets: an ISO given as a path (resolved as disks are) or as a pool volume.</summary>
public abstract class KvmDvdCmdletBase : KvmVmCmdletBase
{
    /// <summary>
    /// The ISO as the definition stores it: with <paramref name="pool"/> a pool reference; a rooted or <c>~</c> path
    /// resolved against the PowerShell location; a bare name stays relative (the VM's disk folder in the store), as for disks.
    /// </summary>
    internal string IsoPath(string path, string? pool) =>
        pool is not null ? new StoragePoolManager(Manager.Store).VolumeReference(pool, path)
        : System.IO.Path.IsPathRooted(path) || path.StartsWith('~') ? ResolvePath(path) : path;

    internal KvmDvdDrive Drive(string name, int index)
    {
        var definition = Manager.Store.Get(name);
        return KvmDvdDrive.From(name, index, definition.DvdDrives[index], p => Manager.Store.ResolveDiskPath(name, p));
    }
}
