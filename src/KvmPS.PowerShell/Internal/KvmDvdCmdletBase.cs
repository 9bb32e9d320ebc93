using KvmPS.Management.Pools;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Shared by the DVD cmdlets: an ISO given as a path (resolved as disks are) or as a pool volume; with -HostName the
/// drives there (kvmps vm dvd list) as KvmPS.RemoteDvdDrive objects.
/// </summary>
public abstract class KvmDvdCmdletBase : KvmRemoteVmCmdletBase
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

    /// <summary>The VM's drives there, in order (ControllerLocation, VmName, Path, Pool, Volume, FullPath, HostName).</summary>
    internal static IReadOnlyList<System.Management.Automation.PSObject> RemoteDrives(RemoteHost remote, string name) =>
        remote.Objects(["vm", "dvd", "list", "--json", "--", name], RemoteObject.DvdDrive);

    /// <summary>-Path and -Pool as kvmps takes them there: a path as given (that host's), or a volume with --pool.</summary>
    internal static IEnumerable<string> RemoteIsoOptions(string? pool) => pool is null ? [] : ["--pool", pool];
}
