namespace KvmPS.Management.Pools;

/// <summary>Base of every storage pool and volume failure; names the pool (and the volume, when there is one).</summary>
public class StoragePoolException : Exception
{
    public StoragePoolException(string poolName, string message, Exception? inner = null) : base(message, inner) => PoolName = poolName;

    public string PoolName { get; }
}

/// <summary>No pool of that name exists.</summary>
public sealed class StoragePoolNotFoundException(string poolName, string storeRoot)
    : StoragePoolException(poolName, $"Storage pool '{poolName}' does not exist in the store at '{storeRoot}' (Get-KvmStoragePool / kvmps pool list shows the pools)");

/// <summary>A pool of that name (or on that folder) exists already.</summary>
public sealed class StoragePoolAlreadyExistsException(string poolName, string reason)
    : StoragePoolException(poolName, $"Storage pool '{poolName}': {reason}");

/// <summary>A pool name, path or setting is refused; <see cref="Property"/> says which (Name, Path).</summary>
public sealed class StoragePoolSettingException : StoragePoolException
{
    public StoragePoolSettingException(string poolName, string property, string value, string reason, Exception? inner = null)
        : base(poolName, $"Storage pool '{poolName}': {property} '{value}' {reason}", inner)
    {
        Property = property;
        Value = value;
        Reason = reason;
    }

    public string Property { get; }
    public string Value { get; }
    public string Reason { get; }
}

/// <summary>A pool cannot be removed: VMs use its volumes, or it is the built-in <c>default</c> pool.</summary>
public sealed class StoragePoolInUseException : StoragePoolException
{
    public StoragePoolInUseException(string poolName, IReadOnlyList<string> vmNames, string message) : base(poolName, message) => VmNames = vmNames;

    public IReadOnlyList<string> VmNames { get; }
}

/// <summary>A volume name, size, format or backing volume is refused.</summary>
public sealed class StorageVolumeSettingException : StoragePoolException
{
    public StorageVolumeSettingException(string poolName, string volumeName, string property, string reason)
        : base(poolName, $"Volume '{volumeName}' in pool '{poolName}': {property} {reason}")
    {
        VolumeName = volumeName;
        Property = property;
        Reason = reason;
    }

    public string VolumeName { get; }
    public string Property { get; }
    public string Reason { get; }
}

/// <summary>No volume of that name in the pool.</summary>
public sealed class StorageVolumeNotFoundException(string poolName, string volumeName, string path)
    : StoragePoolException(poolName, $"Volume '{volumeName}' does not exist in pool '{poolName}' ('{path}')")
{
    public string VolumeName { get; } = volumeName;
}

/// <summary>A volume of that name exists already (KvmPS never overwrites an image).</summary>
public sealed class StorageVolumeAlreadyExistsException(string poolName, string volumeName, string path)
    : StoragePoolException(poolName, $"Volume '{volumeName}' already exists in pool '{poolName}' ('{path}'); KvmPS does not overwrite disk images")
{
    public string VolumeName { get; } = volumeName;
}

/// <summary>A volume cannot be removed: a VM definition (or another volume, as its backing image) uses it.</summary>
public sealed class StorageVolumeInUseException : StoragePoolException
{
    public StorageVolumeInUseException(string poolName, string volumeName, IReadOnlyList<string> vmNames, IReadOnlyList<string> backedVolumes)
        : base(poolName, $"Volume '{volumeName}' in pool '{poolName}' is in use: " + string.Join("; ", Users(vmNames, backedVolumes)) + ". Remove it from them first.")
    {
        VolumeName = volumeName;
        VmNames = vmNames;
        BackedVolumes = backedVolumes;
    }

    public string VolumeName { get; }
    public IReadOnlyList<string> VmNames { get; }
    public IReadOnlyList<string> BackedVolumes { get; }

    private static IEnumerable<string> Users(IReadOnlyList<string> vms, IReadOnlyList<string> volumes)
    {
        if (vms.Count > 0)
            yield return (vms.Count == 1 ? "VM " : "VMs ") + string.Join(", ", vms.Select(v => $"'{v}'")) + (vms.Count == 1 ? " uses" : " use") + " it as a disk";
        if (volumes.Count > 0)
            yield return (volumes.Count == 1 ? "volume " : "volumes ") + string.Join(", ", volumes.Select(v => $"'{v}'")) + (volumes.Count == 1 ? " uses" : " use") + " it as its backing image";
    }
}
