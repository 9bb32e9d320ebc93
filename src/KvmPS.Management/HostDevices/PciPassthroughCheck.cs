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

    /// <summary>
    /// <see cref="Check"/> for an SR-IOV network adapter's VF: it must also be a virtual function (its MAC and VLAN are
    /// set on its physical function). A PF without a network interface is a warning here (its driver may be bound
    /// before the VM starts) and an error at start.
    /// </summary>
    public static PciPassthroughReadiness CheckVirtualFunction(PciHostDevices host, PciAddress address)
    {
        var readiness = Check(host, address);
        var sriov = new HostSriov(host, SysfsWriter.Instance);
        var vf = sriov.FindVirtualFunction(address)
            ?? throw new PciPassthroughException(address, $"it is not an SR-IOV virtual function ({readiness.Device.ClassName}); a network adapter takes a VF (Get-KvmHostPciDevice lists them with their parent). Pass other devices through with Add-KvmPciPassthrough.");
        if (sriov.NetworkInterface(vf.PhysicalFunction) is null)
            return readiness with
            {
                Warnings = [.. readiness.Warnings, $"the physical function {vf.PhysicalFunction} of {address} has no network interface now; the VF's MAC and VLAN are set through it when the VM starts, which fails without one."],
            };
        return readiness;
    }
}
