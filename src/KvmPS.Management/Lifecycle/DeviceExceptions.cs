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

/// <summary>A vfio-user device's server is not there: its socket path does not exist or is not a Unix socket.</summary>
public sealed class VfioUserServerNotFoundException : VmManagementException
{
    public VfioUserServerNotFoundException(string vmName, string socketPath, string reason)
        : base(vmName, $"VM '{vmName}': vfio-user device '{socketPath}': {reason}; start its server first (VfioUserDevices)") => SocketPath = socketPath;

    public string SocketPath { get; }
}

/// <summary>How hot-plug errors name a device: "disk 'data.qcow2'", "network adapter 52:54:00:12:34:56".</summary>
internal static class HotplugText
{
    public static string Device(string property, string device) => property switch
    {
        "Disks" => $"disk '{device}'",
        "NetworkAdapters" => $"network adapter {device}",
        _ => device,
    };
}

/// <summary>
/// The running VM's kvmps-vmm cannot hot-plug disks or network adapters (an older VMM: it answers <c>device.add</c> or
/// <c>device.remove</c> as an unknown request). Nothing was changed: stop the VM first, or store the change for the next
/// start only (<c>-Config</c>, <c>--config</c>).
/// </summary>
public sealed class VmDeviceHotplugNotSupportedException : VmManagementException
{
    public VmDeviceHotplugNotSupportedException(string vmName, string property, string device, Exception? inner = null)
        : base(vmName, $"VM '{vmName}': {property}: {HotplugText.Device(property, device)}: {VmManager.HotplugMissingAdvice}", inner)
    {
        Property = property;
        Device = device;
    }

    public string Property { get; }
    public string Device { get; }
}

/// <summary>
/// The running VM (its VMM or its guest) refused to hot-plug or unplug a device: <see cref="VmmCode"/> and
/// <see cref="VmmReason"/> are the VMM's words (an image it cannot open, no free PCI slot, a device not hot-pluggable).
/// The device is as it was before the request.
/// </summary>
public sealed class VmDeviceHotplugRefusedException : VmManagementException
{
    public VmDeviceHotplugRefusedException(string vmName, string property, string device, string action, string vmmCode, string vmmReason, Exception? inner = null)
        : base(vmName, $"VM '{vmName}': {property}: the running VM refused {action} {HotplugText.Device(property, device)}: {vmmCode}: {vmmReason}", inner)
    {
        Property = property;
        Device = device;
        VmmCode = vmmCode;
        VmmReason = vmmReason;
    }

    public string Property { get; }
    /// <summary>The disk's path as in the definition, or the adapter's MAC address.</summary>
    public string Device { get; }
    public string VmmCode { get; }
    public string VmmReason { get; }
}

/// <summary>
/// The guest did not release a device asked to be removed within <see cref="Timeout"/>: the device stays attached and
/// working (the eject request stays pending in the VM; nothing is torn down under the guest), and the definition keeps it.
/// </summary>
public sealed class VmDeviceRemovalTimeoutException : VmManagementException
{
    public VmDeviceRemovalTimeoutException(string vmName, string property, string device, string pci, TimeSpan timeout)
        : base(vmName, $"VM '{vmName}': the guest did not release {HotplugText.Device(property, device)} (PCI {pci}) within {timeout.TotalSeconds:0.###} s; " +
                       "it stays attached and in the definition (the eject request is still pending: try again with a longer timeout, or stop the VM and remove it then)")
    {
        Property = property;
        Device = device;
        Pci = pci;
        Timeout = timeout;
    }

    public string Property { get; }
    public string Device { get; }
    /// <summary>The device's PCI address in the VM (bus:slot.function).</summary>
    public string Pci { get; }
    public TimeSpan Timeout { get; }
}
