using System.Globalization;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.HostDevices;

/// <summary>An SR-IOV change the host refuses or the kernel rejected; names the device and why.</summary>
public sealed class HostSriovException(PciAddress address, string reason)
    : Exception($"PCI device {address}: {reason}")
{
    public PciAddress Address { get; } = address;
    public string Reason { get; } = reason;
}

/// <summary>A virtual function as its physical function's sysfs lists it (<c>virtfnN</c> links).</summary>
public sealed record SriovVirtualFunction(PciAddress PhysicalFunction, int Index, PciAddress Address);

/// <summary>
/// SR-IOV through sysfs: how many virtual functions a physical function has enabled (<c>sriov_numvfs</c>, at most
/// <c>sriov_totalvfs</c>), which they are (<c>virtfnN</c>), and the PF's network interface (for VF MAC/VLAN over
/// netlink, <see cref="VfNetlink"/>).
/// </summary>
public sealed class HostSriov(PciHostDevices host, ISysfsWriter writer)
{
    public HostSriov() : this(new PciHostDevices(), SysfsWriter.Instance) { }

    /// <summary>The sysfs tree read.</summary>
    public PciHostDevices Host => host;

    private string DeviceDirectory(PciAddress address) => Path.Combine(host.DevicesDirectory, address.ToString());

    /// <summary>
    /// Sets the number of enabled VFs of <paramref name="physicalFunction"/> to <paramref name="count"/>; false when it
    /// already had that many. Refuses a missing or non-SR-IOV device, a count above <c>sriov_totalvfs</c>, and
    /// changing the count while a VF is bound to vfio-pci (a VM holds it: the VFs are destroyed and recreated).
    /// The kernel only changes a non-zero count through zero, so that is written first.
    /// </summary>
    public bool SetVfCount(PciAddress physicalFunction, int count)
    {
        var device = Check(physicalFunction, count);
        var current = device.SriovNumVfs ?? 0;
        if (current == count)
            return false;
        var path = Path.Combine(DeviceDirectory(physicalFunction), "sriov_numvfs");
        if (current != 0)
            Write(physicalFunction, path, "0");
        Write(physicalFunction, path, count.ToString(CultureInfo.InvariantCulture));
        var now = host.TryRead(physicalFunction)?.SriovNumVfs;
        if (now != count)
            throw new HostSriovException(physicalFunction, $"sriov_numvfs is {now?.ToString(CultureInfo.InvariantCulture) ?? "unreadable"} after writing {count}.");
        return true;
    }

    /// <summary>
    /// The checks of <see cref="SetVfCount"/> alone (for -WhatIf): the device as it is now. With
    /// <paramref name="checkVfsInUse"/> false, a VF bound to vfio-pci is not checked (a plan may stop its VM first;
    /// see <see cref="BoundVirtualFunction"/>).
    /// </summary>
    public PciHostDevice Check(PciAddress physicalFunction, int count, bool checkVfsInUse = true)
    {
        var device = host.TryRead(physicalFunction)
            ?? throw new HostSriovException(physicalFunction, $"this host has no such device (not in {host.DevicesDirectory}).");
        if (device.IsVirtualFunction)
            throw new HostSriovException(physicalFunction, $"it is a virtual function of {device.PhysicalFunction}; set the VF count on that physical function.");
        if (device.SriovTotalVfs is not int total)
            throw new HostSriovException(physicalFunction, $"it is not SR-IOV capable (no sriov_totalvfs; {device.ClassName}, driver {device.Driver ?? "none"}).");
        if (count < 0)
            throw new HostSriovException(physicalFunction, $"a VF count of {count} is negative.");
        if (count > total)
            throw new HostSriovException(physicalFunction, $"asks for {count} virtual functions but it supports at most {total} (sriov_totalvfs).");
        if (checkVfsInUse && (device.SriovNumVfs ?? 0) != count && BoundVirtualFunction(physicalFunction) is { } vf)
            throw new HostSriovException(physicalFunction,
                $"its virtual function {vf.Address} (VF {vf.Index}) is bound to vfio-pci, passed through to a VM; changing the VF count would remove it. Stop that VM first.");
        return device;
    }

    /// <summary>The first VF of <paramref name="physicalFunction"/> bound to vfio-pci (held by a VM), or null.</summary>
    public SriovVirtualFunction? BoundVirtualFunction(PciAddress physicalFunction) =>
        VirtualFunctions(physicalFunction).FirstOrDefault(vf => host.TryRead(vf.Address) is { IsVfioBound: true });

    /// <summary>The PF's enabled virtual functions in VF index order.</summary>
    public IReadOnlyList<SriovVirtualFunction> VirtualFunctions(PciAddress physicalFunction)
    {
        var directory = DeviceDirectory(physicalFunction);
        var result = new List<SriovVirtualFunction>();
        if (!Directory.Exists(directory))
            return result;
        foreach (var link in Directory.EnumerateFileSystemEntries(directory, "virtfn*"))
        {
            if (!int.TryParse(Path.GetFileName(link)["virtfn".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var index))
                continue;
            if (new FileInfo(link).LinkTarget is not { } target)
                continue;
            try { result.Add(new SriovVirtualFunction(physicalFunction, index, PciAddress.Parse(Path.GetFileName(Path.TrimEndingDirectorySeparator(target))))); }
            catch (FormatException) { }
        }
        result.Sort((a, b) => a.Index.CompareTo(b.Index));
        return result;
    }

    /// <summary>A VF's physical function and index (what <c>ip link set PF vf N</c> needs), or null if it is no VF.</summary>
    public SriovVirtualFunction? FindVirtualFunction(PciAddress virtualFunction) =>
        host.TryRead(virtualFunction)?.PhysicalFunction is { } pf
            ? VirtualFunctions(pf).FirstOrDefault(vf => vf.Address == virtualFunction)
            : null;

    /// <summary>The network interface of a PCI function (<c>net/NAME</c>), or null when it has none.</summary>
    public string? NetworkInterface(PciAddress address)
    {
        var net = Path.Combine(DeviceDirectory(address), "net");
        return Directory.Exists(net) ? Directory.EnumerateDirectories(net).Select(Path.GetFileName).Order(StringComparer.Ordinal).FirstOrDefault() : null;
    }

    private static void Write(ISysfsWriter writer, PciAddress address, string path, string value)
    {
        try { writer.Write(path, value); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HostSriovException(address, $"writing {value} to {path} failed: {e.Message}");
        }
    }

    private void Write(PciAddress address, string path, string value) => Write(writer, address, path, value);
}
