using KvmPS.Management.Definitions;

namespace KvmPS.Management.HostDevices;

/// <summary>
/// What binding a function to vfio-pci changed, so it can be given back: the driver it had before (null if none).
/// <see cref="OriginalDriver"/> = "vfio-pci" means it was already bound to vfio-pci, and giving it back changes nothing.
/// </summary>
public sealed record PciBindingRecord(PciAddress Address, string? OriginalDriver);

/// <summary>Binding a function to vfio-pci or giving it back failed; names the device and what happened.</summary>
public sealed class PciBindingException(PciAddress address, string reason)
    : Exception($"PCI device {address}: {reason}")
{
    public PciAddress Address { get; } = address;
    public string Reason { get; } = reason;
}

/// <summary>
/// Moves a host PCI function to vfio-pci and back through sysfs, the way the kernel documents it: set
/// <c>driver_override</c>, unbind from the current driver, ask the bus to probe again, and check the <c>driver</c>
/// link. Every step is verified; a failed bind is rolled back. Giving back works from any intermediate state, so a
/// crash between <see cref="Bind"/> and <see cref="Return"/> (or during either) is repaired by calling Return again.
/// </summary>
public sealed class PciDriverBinding(PciHostDevices host, ISysfsWriter writer)
{
    public const string VfioDriver = "vfio-pci";

    private string DeviceDirectory(PciAddress address) => Path.Combine(host.DevicesDirectory, address.ToString());

    private string DriversProbe => Path.Combine(host.SysfsRoot, "bus", "pci", "drivers_probe");

    /// <summary>
    /// Binds <paramref name="address"/> to vfio-pci. Refuses (nothing rebound) a missing device or one the host is
    /// using (<see cref="PciHostUse.Check"/>); the IOMMU group and other VMs are the caller's checks
    /// (<see cref="PciPassthroughHost"/>).
    /// </summary>
    public PciBindingRecord Bind(PciAddress address)
    {
        var device = host.TryRead(address)
            ?? throw new PciPassthroughException(address, $"this host has no such device (not in {host.DevicesDirectory}).");
        if (device.IsVfioBound)
            return new PciBindingRecord(address, VfioDriver);
        PciHostUse.Check(host, device);
        var record = new PciBindingRecord(address, device.Driver);
        var directory = DeviceDirectory(address);
        try
        {
            Write(address, Path.Combine(directory, "driver_override"), VfioDriver);
            if (device.Driver is not null)
                Write(address, Path.Combine(directory, "driver", "unbind"), address.ToString());
            Write(address, DriversProbe, address.ToString());
        }
        catch (PciBindingException)
        {
            TryRollBack(record);
            throw;
        }
        var now = ReadDriver(address);
        if (now != VfioDriver)
        {
            TryRollBack(record);
            throw new PciBindingException(address,
                $"after driver_override={VfioDriver} and drivers_probe it is bound to {now ?? "no driver"}, not {VfioDriver} " +
                $"(is the vfio-pci module loaded? 'modprobe vfio-pci'); it was given back to {device.Driver ?? "no driver"}.");
        }
        return record;
    }

    /// <summary>
    /// Gives the function back to the driver in <paramref name="record"/>: unbind from vfio-pci, clear
    /// <c>driver_override</c>, probe, and check the original driver took it. A device that is gone (a VF whose PF
    /// dropped its VFs) has nothing to give back.
    /// </summary>
    public void Return(PciBindingRecord record)
    {
        var address = record.Address;
        if (record.OriginalDriver == VfioDriver || !Directory.Exists(DeviceDirectory(address)))
            return;
        var directory = DeviceDirectory(address);
        if (ReadDriver(address) == VfioDriver)
            Write(address, Path.Combine(directory, "driver", "unbind"), address.ToString());
        // "\n" clears the override (an empty write is refused by some kernels).
        Write(address, Path.Combine(directory, "driver_override"), "\n");
        if (record.OriginalDriver is null)
            return; // it had no driver: leave it without one rather than let the probe pick one
        if (ReadDriver(address) is null)
            Write(address, DriversProbe, address.ToString());
        var now = ReadDriver(address);
        if (now != record.OriginalDriver)
            throw new PciBindingException(address,
                $"was given back but is bound to {now ?? "no driver"}, not its original driver {record.OriginalDriver} " +
                $"(bind it by hand: echo {address} > /sys/bus/pci/drivers/{record.OriginalDriver}/bind).");
    }

    private void TryRollBack(PciBindingRecord record)
    {
        try { Return(record); }
        catch (Exception e) when (e is PciBindingException or IOException or UnauthorizedAccessException) { /* the bind error is the one to report */ }
    }

    private string? ReadDriver(PciAddress address) => host.TryRead(address)?.Driver;

    private void Write(PciAddress address, string path, string value)
    {
        try
        {
            writer.Write(path, value);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var shown = value == "\n" ? "\\n" : value;
            throw new PciBindingException(address, $"writing '{shown}' to {path} failed: {e.Message}");
        }
    }
}
