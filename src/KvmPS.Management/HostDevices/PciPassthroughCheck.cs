using KvmPS.Management.Definitions;

namespace KvmPS.Management.HostDevices;

/// <summary>A host PCI function that cannot be passed through; names the address and says why.</summary>
public sealed class PciPassthroughException(PciAddress address, string reason)
    : Exception($"PCI device {address} cannot be passed through: {reason}")
{
    public PciAddress Address { get; } = address;
    public string Reason { get; } = reason;
}

/// <summary>What is true of a function that can be passed through, and what still needs the admin's hand.</summary>
public sealed record PciPassthroughReadiness(PciHostDevice Device, IReadOnlyList<string> Warnings);

/// <summary>
/// Decides whether a host PCI function can be given to a VM with VFIO (the one place the cmdlets and the CLI ask):
/// it must exist, the IOMMU must be on (the function has an IOMMU group), and every other function in its group
/// must be either bound to vfio-pci, driverless, or a PCI bridge — VFIO hands a VM the whole group or nothing.
/// Not yet being bound to vfio-pci itself is only a warning: that is done before the VM starts.
/// </summary>
public static class PciPassthroughCheck
{
    private const uint PciBridgeClass = 0x0604;

    public static PciPassthroughReadiness Check(PciHostDevices host, PciAddress address)
    {
        var device = host.TryRead(address)
            ?? throw new PciPassthroughException(address, $"this host has no such device (not in {host.DevicesDirectory}).");
        if (device.IommuGroup is not int group)
            throw new PciPassthroughException(address, "it has no IOMMU group: the IOMMU is off (enable VT-d/AMD-Vi and boot with intel_iommu=on or amd_iommu=on).");
        var warnings = new List<string>();
        foreach (var member in device.IommuGroupMembers)
        {
            if (member == address) continue;
            var other = host.TryRead(member);
            if (other is null || other.IsVfioBound || other.Driver is null || (other.ClassCode >> 8) == PciBridgeClass) continue;
            throw new PciPassthroughException(address,
                $"IOMMU group {group} also holds {member} ({other.ClassName}), which is bound to the host driver {other.Driver}; " +
                "pass the whole group through or bind every member to vfio-pci.");
        }
        if (!device.IsVfioBound)
            warnings.Add($"PCI device {address} ({device.ClassName}) is bound to {device.Driver ?? "no driver"}, not vfio-pci; KvmPS binds it to vfio-pci when the VM starts and gives it back when it stops.");
        return new PciPassthroughReadiness(device, warnings);
    }
}
