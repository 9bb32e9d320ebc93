using System.Globalization;
using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;

namespace KvmPS.Management.Tests.HostDevices;

/// <summary>
/// A sysfs tree in a temporary directory (bus/pci/devices, bus/pci/drivers, kernel/iommu_groups) laid out as the
/// kernel lays it out, read by the real <see cref="PciHostDevices"/>.
/// </summary>
public sealed class FakeSysfs : IDisposable
{
    public FakeSysfs()
    {
        Root = Path.Combine("/tmp", "kvmps-sysfs-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Devices);
        Directory.CreateDirectory(Drivers);
        File.WriteAllText(Path.Combine(Root, "bus", "pci", "drivers_probe"), "");
        Kernel = new FakeKernel(this);
    }

    public string Root { get; }
    public string Devices => Path.Combine(Root, "bus", "pci", "devices");
    public string Drivers => Path.Combine(Root, "bus", "pci", "drivers");
    public FakeKernel Kernel { get; }
    public PciHostDevices Host => new(Root);

    public string DeviceDirectory(string address) => Path.Combine(Devices, address);

    /// <summary>A loaded driver (its directory with bind/unbind); vfio-pci only exists once added, like the module.</summary>
    public void AddDriver(string name)
    {
        var directory = Path.Combine(Drivers, name);
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "bind"), "");
        File.WriteAllText(Path.Combine(directory, "unbind"), "");
    }

    /// <summary>A function; <paramref name="driver"/> is also the one the kernel's probe picks without an override.</summary>
    public string AddDevice(string address, string? driver, int? iommuGroup, uint classCode = 0x020000, int? totalVfs = null)
    {
        var directory = DeviceDirectory(address);
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "vendor"), "0x8086\n");
        File.WriteAllText(Path.Combine(directory, "device"), "0x10fb\n");
        File.WriteAllText(Path.Combine(directory, "class"), string.Create(CultureInfo.InvariantCulture, $"0x{classCode:x6}\n"));
        File.WriteAllText(Path.Combine(directory, "driver_override"), "(null)\n");
        if (totalVfs is int total)
        {
            File.WriteAllText(Path.Combine(directory, "sriov_totalvfs"), string.Create(CultureInfo.InvariantCulture, $"{total}\n"));
            File.WriteAllText(Path.Combine(directory, "sriov_numvfs"), "0\n");
        }
        if (iommuGroup is int group)
        {
            var groupDevices = Path.Combine(Root, "kernel", "iommu_groups", group.ToString(CultureInfo.InvariantCulture), "devices");
            Directory.CreateDirectory(groupDevices);
            File.CreateSymbolicLink(Path.Combine(groupDevices, address), directory);
            File.CreateSymbolicLink(Path.Combine(directory, "iommu_group"), Path.GetDirectoryName(groupDevices)!);
        }
        if (driver is not null)
        {
            Kernel.NativeDriver[address] = driver;
            if (!Directory.Exists(Path.Combine(Drivers, driver))) AddDriver(driver);
            LinkDriver(address, driver);
        }
        return directory;
    }

    /// <summary>A network interface of the function, with its operstate.</summary>
    public void AddNetworkInterface(string address, string name, string operstate)
    {
        var nic = Path.Combine(DeviceDirectory(address), "net", name);
        Directory.CreateDirectory(nic);
        File.WriteAllText(Path.Combine(nic, "operstate"), operstate + "\n");
    }

    public string? DriverOf(string address) => new FileInfo(Path.Combine(DeviceDirectory(address), "driver")).LinkTarget is { } t ? Path.GetFileName(t) : null;

    public string Override(string address) => File.ReadAllText(Path.Combine(DeviceDirectory(address), "driver_override")).Trim();

    internal void LinkDriver(string address, string driver) =>
        File.CreateSymbolicLink(Path.Combine(DeviceDirectory(address), "driver"), Path.Combine(Drivers, driver));

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); }
        catch (IOException) { }
    }
}

/// <summary>
/// The kernel's side of the writes: what writing driver_override, a driver's unbind, drivers_probe and sriov_numvfs
/// does to the tree. Records every write; <see cref="FailWhen"/> makes a write fail as the kernel's refusal would.
/// </summary>
public sealed class FakeKernel(FakeSysfs sysfs) : ISysfsWriter
{
    public Dictionary<string, string> NativeDriver { get; } = new(StringComparer.Ordinal);
    public List<(string Path, string Value)> Writes { get; } = new();
    public Func<string, string, bool>? FailWhen { get; set; }

    public void Write(string path, string value)
    {
        var relative = Path.GetRelativePath(sysfs.Root, path);
        Writes.Add((relative, value));
        if (FailWhen?.Invoke(relative, value) == true)
            throw new IOException("No such device");
        var name = Path.GetFileName(path);
        var parent = Path.GetDirectoryName(path)!;
        switch (name)
        {
            case "driver_override":
                File.WriteAllText(path, value.Trim().Length == 0 ? "(null)\n" : value.Trim() + "\n");
                break;
            case "unbind":
                // DEVICE/driver/unbind resolves to drivers/NAME/unbind; the kernel unbinds the written address.
                var driverName = Path.GetFileName(new FileInfo(parent).LinkTarget ?? parent);
                if (sysfs.DriverOf(value) != driverName)
                    throw new IOException("No such device");
                File.Delete(Path.Combine(sysfs.DeviceDirectory(value), "driver"));
                break;
            case "drivers_probe":
                if (!Directory.Exists(sysfs.DeviceDirectory(value))) throw new IOException("No such device");
                if (sysfs.DriverOf(value) is not null) break;
                var over = sysfs.Override(value);
                var pick = over != "(null)" ? over : NativeDriver.GetValueOrDefault(value);
                // With an override only that driver may bind; a driver that is not loaded binds nothing.
                if (pick is not null && Directory.Exists(Path.Combine(sysfs.Drivers, pick)))
                    sysfs.LinkDriver(value, pick);
                break;
            case "sriov_numvfs":
                SetVfs(parent, int.Parse(value, CultureInfo.InvariantCulture));
                break;
            default:
                throw new IOException($"fake kernel: no handler for {relative}");
        }
    }

    private void SetVfs(string pfDirectory, int count)
    {
        var current = int.Parse(File.ReadAllText(Path.Combine(pfDirectory, "sriov_numvfs")).Trim(), CultureInfo.InvariantCulture);
        if (current != 0 && count != 0 && current != count)
            throw new IOException("Device or resource busy"); // the kernel's EBUSY: go through 0
        var total = int.Parse(File.ReadAllText(Path.Combine(pfDirectory, "sriov_totalvfs")).Trim(), CultureInfo.InvariantCulture);
        if (count > total) throw new IOException("Numerical result out of range");
        var pf = PciAddress.Parse(Path.GetFileName(pfDirectory));
        for (var i = 0; i < current; i++)
        {
            var link = Path.Combine(pfDirectory, $"virtfn{i}");
            var vf = Path.GetFileName(new FileInfo(link).LinkTarget!);
            File.Delete(link);
            var group = new FileInfo(Path.Combine(sysfs.DeviceDirectory(vf), "iommu_group")).LinkTarget!;
            File.Delete(Path.Combine(group, "devices", vf));
            Directory.Delete(sysfs.DeviceDirectory(vf), recursive: true);
        }
        for (var i = 0; i < count; i++)
        {
            // VFs follow their PF at function 1, 2, ... of the next devices (enough for the tests' routing).
            var vf = new PciAddress(pf.Domain, (byte)(pf.Bus + 1), (byte)(i / 8), (byte)(i % 8)).ToString();
            var directory = sysfs.AddDevice(vf, "ixgbevf", iommuGroup: 100 + i);
            File.CreateSymbolicLink(Path.Combine(directory, "physfn"), pfDirectory);
            File.CreateSymbolicLink(Path.Combine(pfDirectory, $"virtfn{i}"), directory);
        }
        File.WriteAllText(Path.Combine(pfDirectory, "sriov_numvfs"), count.ToString(CultureInfo.InvariantCulture) + "\n");
    }
}
