using KvmPS.Management.Pools;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Base of the storage pool and volume cmdlets: the <see cref="StoragePoolManager"/> over the cmdlets' store, and
/// -HostName (kvmps pool|vol ... --json there; paths are that host's).
/// </summary>
public abstract class KvmPoolCmdletBase : KvmRemoteCmdletBase
{
    private StoragePoolManager? _pools;

    internal StoragePoolManager Pools => _pools ??= new StoragePoolManager(Manager.Store);
}
