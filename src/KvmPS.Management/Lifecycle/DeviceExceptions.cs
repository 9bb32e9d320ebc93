namespace KvmPS.Management.Lifecycle;

/// <summary>The VM has no such device (disk, network adapter, PCI function). <see cref="Property"/> is the schema key, <see cref="Device"/> what was asked for.</summary>
public sealed class VmDeviceNotFoundException : VmManagementException
{
    public VmDeviceNotFoundException(string vmName, string property, string device, string message)
        : base(vmName, message)
    {
        Property = property;
        Device = device;
    }

    public string Property { get; }
    public string Device { get; }
}

/// <summary>The device is already part of the VM's definition.</summary>
public sealed class VmDeviceAlreadyAttachedException : VmManagementException
{
    public VmDeviceAlreadyAttachedException(string vmName, string property, string device, string message)
        : base(vmName, message)
    {
        Property = property;
        Device = device;
    }

    public string Property { get; }
    public string Device { get; }
}

/// <summary>A disk image to attach does not exist (and no size was given to create it).</summary>
public sealed class DiskImageNotFoundException : VmManagementException
{
    public DiskImageNotFoundException(string vmName, string path)
        : base(vmName, $"Disk image '{path}' does not exist (give a size to create it)") => Path = path;

    public string Path { get; }
}
