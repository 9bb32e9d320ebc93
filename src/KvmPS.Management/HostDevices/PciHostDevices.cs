using System.Globalization;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.HostDevices;

/// <summary>
/// One host PCI function as sysfs describes it (<c>/sys/bus/pci/devices/DDDD:BB:DD.F</c>): ids, class, bound
/// driver, IOMMU group and SR-IOV state. Everything a passthrough decision needs: a function can only be given
/// to a VM together with its whole IOMMU group, bound to <c>vfio-pci</c>.
/// </summary>
public sealed record PciHostDevice
{
    public required PciAddress Address { get; init; }

    /// <summary>PCI vendor id (<c>vendor</c>, e.g. 0x8086).</summary>
    public ushort VendorId { get; init; }

    public ushort DeviceId { get; init; }
    public ushort? SubsystemVendorId { get; init; }
    public ushort? SubsystemDeviceId { get; init; }

    /// <summary>24-bit class code (<c>class</c>): base class, subclass, programming interface.</summary>
    public uint ClassCode { get; init; }

    /// <summary>A readable name of the base class and subclass, e.g. "Ethernet controller".</summary>
    public string ClassName => PciClassNames.Describe(ClassCode);

    /// <summary>The bound driver (<c>driver</c> symlink), null if none.</summary>
    public string? Driver { get; init; }

    /// <summary>The IOMMU group (<c>iommu_group</c> symlink); null when the IOMMU is off — then no passthrough is possible.</summary>
    public int? IommuGroup { get; init; }

    /// <summary>Other functions in the same IOMMU group (they must be passed through or unbound together).</summary>
    public IReadOnlyList<PciAddress> IommuGroupMembers { get; init; } = Array.Empty<PciAddress>();

    public int? NumaNode { get; init; }

    /// <summary>SR-IOV: virtual functions the physical function supports (<c>sriov_totalvfs</c>); null if not SR-IOV capable.</summary>
    public int? SriovTotalVfs { get; init; }

    /// <summary>SR-IOV: virtual functions currently enabled (<c>sriov_numvfs</c>).</summary>
    public int? SriovNumVfs { get; init; }

    /// <summary>For a virtual function, its physical function (<c>physfn</c> symlink).</summary>
    public PciAddress? PhysicalFunction { get; init; }

    public bool IsVirtualFunction => PhysicalFunction is not null;

    /// <summary>Bound to vfio-pci, i.e. ready to be passed through.</summary>
    public bool IsVfioBound => string.Equals(Driver, "vfio-pci", StringComparison.Ordinal);

    public string VendorDevice => string.Create(CultureInfo.InvariantCulture, $"{VendorId:x4}:{DeviceId:x4}");
}

/// <summary>Reads <see cref="PciHostDevice"/>s from sysfs. The root is injectable so tests can use a fake tree.</summary>
public sealed class PciHostDevices
{
    public const string DefaultSysfsRoot = "/sys";

    /// <summary>Points the cmdlets and the CLI at another sysfs tree (the Pester and CLI tests' fake one).</summary>
    public const string SysfsRootVariable = "KVMPS_SYSFS_ROOT";

    public PciHostDevices(string? sysfsRoot = null) =>
        SysfsRoot = sysfsRoot ?? (Environment.GetEnvironmentVariable(SysfsRootVariable) is { Length: > 0 } root ? root : DefaultSysfsRoot);

    public string SysfsRoot { get; }

    public string DevicesDirectory => Path.Combine(SysfsRoot, "bus", "pci", "devices");

    /// <summary>Every PCI function, by address. A host without PCI (or without sysfs) has none.</summary>
    public IReadOnlyList<PciHostDevice> List()
    {
        if (!Directory.Exists(DevicesDirectory))
            return Array.Empty<PciHostDevice>();
        var result = new List<PciHostDevice>();
        foreach (var entry in Directory.EnumerateFileSystemEntries(DevicesDirectory))
        {
            if (!TryParseAddress(Path.GetFileName(entry), out var address))
                continue;
            if (TryRead(address) is { } device)
                result.Add(device);
        }
        result.Sort((a, b) => Compare(a.Address, b.Address));
        return result;
    }

    /// <summary>The function at <paramref name="address"/>, or null if the host has none there.</summary>
    public PciHostDevice? TryRead(PciAddress address)
    {
        var directory = Path.Combine(DevicesDirectory, address.ToString());
        if (!Directory.Exists(directory))
            return null;
        int? iommuGroup = ReadLinkName(Path.Combine(directory, "iommu_group")) is { } group && int.TryParse(group, NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g : null;
        return new PciHostDevice
        {
            Address = address,
            VendorId = (ushort)(ReadHex(directory, "vendor") ?? 0),
            DeviceId = (ushort)(ReadHex(directory, "device") ?? 0),
            SubsystemVendorId = (ushort?)ReadHex(directory, "subsystem_vendor"),
            SubsystemDeviceId = (ushort?)ReadHex(directory, "subsystem_device"),
            ClassCode = (uint)(ReadHex(directory, "class") ?? 0) & 0xFFFFFF,
            Driver = ReadLinkName(Path.Combine(directory, "driver")),
            IommuGroup = iommuGroup,
            IommuGroupMembers = iommuGroup is { } id ? ReadGroupMembers(id) : Array.Empty<PciAddress>(),
            NumaNode = ReadInt(directory, "numa_node") is { } node && node >= 0 ? node : null,
            SriovTotalVfs = ReadInt(directory, "sriov_totalvfs"),
            SriovNumVfs = ReadInt(directory, "sriov_numvfs"),
            PhysicalFunction = ReadLinkName(Path.Combine(directory, "physfn")) is { } pf && TryParseAddress(pf, out var physical) ? physical : null,
        };
    }

    private IReadOnlyList<PciAddress> ReadGroupMembers(int group)
    {
        var devices = Path.Combine(SysfsRoot, "kernel", "iommu_groups", group.ToString(CultureInfo.InvariantCulture), "devices");
        if (!Directory.Exists(devices))
            return Array.Empty<PciAddress>();
        var members = new List<PciAddress>();
        foreach (var entry in Directory.EnumerateFileSystemEntries(devices))
            if (TryParseAddress(Path.GetFileName(entry), out var member))
                members.Add(member);
        members.Sort(Compare);
        return members;
    }

    private static int Compare(PciAddress a, PciAddress b) =>
        (a.Domain, a.Bus, a.Device, a.Function).CompareTo((b.Domain, b.Bus, b.Device, b.Function));

    private static bool TryParseAddress(string text, out PciAddress address)
    {
        try
        {
            address = PciAddress.Parse(text);
            return true;
        }
        catch (FormatException)
        {
            address = default;
            return false;
        }
    }

    private static string? ReadAttribute(string directory, string name)
    {
        try
        {
            return File.ReadAllText(Path.Combine(directory, name)).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static long? ReadHex(string directory, string name)
    {
        var text = ReadAttribute(directory, name);
        if (text is null)
            return null;
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            text = text[2..];
        return long.TryParse(text, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var value) ? value : null;
    }

    private static int? ReadInt(string directory, string name) =>
        ReadAttribute(directory, name) is { } text && int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) ? value : null;

    /// <summary>The last path component of a symlink's target (<c>driver → ../../../bus/pci/drivers/e1000e</c> gives "e1000e").</summary>
    private static string? ReadLinkName(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (info.LinkTarget is { } target)
                return Path.GetFileName(Path.TrimEndingDirectorySeparator(target));
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}

/// <summary>Names for PCI base classes and common subclasses (PCI Code and ID Assignment specification).</summary>
public static class PciClassNames
{
    public static string Describe(uint classCode)
    {
        var baseClass = (byte)(classCode >> 16);
        var subClass = (byte)(classCode >> 8);
        return (baseClass, subClass) switch
        {
            (0x01, 0x01) => "IDE controller",
            (0x01, 0x06) => "SATA controller",
            (0x01, 0x07) => "SAS controller",
            (0x01, 0x08) => "NVMe controller",
            (0x01, _) => "Mass storage controller",
            (0x02, 0x00) => "Ethernet controller",
            (0x02, 0x80) => "Network controller",
            (0x02, _) => "Network controller",
            (0x03, 0x00) => "VGA compatible controller",
            (0x03, 0x02) => "3D controller",
            (0x03, _) => "Display controller",
            (0x04, 0x03) => "Audio device",
            (0x04, _) => "Multimedia controller",
            (0x05, _) => "Memory controller",
            (0x06, 0x00) => "Host bridge",
            (0x06, 0x01) => "ISA bridge",
            (0x06, 0x04) => "PCI bridge",
            (0x06, _) => "Bridge",
            (0x07, _) => "Communication controller",
            (0x08, _) => "System peripheral",
            (0x0c, 0x03) => "USB controller",
            (0x0c, 0x05) => "SMBus",
            (0x0c, _) => "Serial bus controller",
            (0x0d, _) => "Wireless controller",
            (0x10, _) => "Encryption controller",
            (0x12, _) => "Processing accelerator",
            (0xff, _) => "Unassigned class",
            _ => string.Create(CultureInfo.InvariantCulture, $"Class {baseClass:x2}{subClass:x2}"),
        };
    }
}
