namespace KvmPS.Management.Store;

/// <summary>What <see cref="VmStore.Delete"/> does with the VM's disk directory.</summary>
public enum DiskRetention
{
    /// <summary>Delete the disk directory with the VM. Disk files outside the store are never touched.</summary>
    Delete,

    /// <summary>Move the disk directory to <c>&lt;root&gt;/retained-disks/&lt;name&gt;-&lt;id&gt;/</c>.</summary>
    Keep,
}
