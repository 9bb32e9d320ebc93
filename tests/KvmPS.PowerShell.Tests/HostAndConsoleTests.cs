using System.Text;
using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;
using KvmPS.Management.SerialConsole;

namespace KvmPS.PowerShell.Tests;

public sealed class PciHostDevicesTests : IDisposable
{
    private readonly string _sysfs = Path.Combine(Path.GetTempPath(), "kps-sysfs-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose() => Directory.Delete(_sysfs, recursive: true);

    /// <summary>A device directory as the kernel lays it out, with driver / iommu_group / physfn symlinks.</summary>
    private void AddDevice(string address, string vendor, string device, string @class, string? driver = null, int? group = null,
        int? totalVfs = null, int? numVfs = null, string? physfn = null)
    {
        var real = Path.Combine(_sysfs, "devices", "pci0000:00", address);
        Directory.CreateDirectory(real);
        File.WriteAllText(Path.Combine(real, "vendor"), vendor + "\n");
        File.WriteAllText(Path.Combine(real, "device"), device + "\n");
        File.WriteAllText(Path.Combine(real, "class"), @class + "\n");
        File.WriteAllText(Path.Combine(real, "numa_node"), "-1\n");
        if (driver is not null)
        {
            Directory.CreateDirectory(Path.Combine(_sysfs, "bus", "pci", "drivers", driver));
            File.CreateSymbolicLink(Path.Combine(real, "driver"), $"../../../bus/pci/drivers/{driver}");
        }
        if (group is { } g)
        {
            var groupDevices = Path.Combine(_sysfs, "kernel", "iommu_groups", g.ToString(), "devices");
            Directory.CreateDirectory(groupDevices);
            File.CreateSymbolicLink(Path.Combine(groupDevices, address), real);
            File.CreateSymbolicLink(Path.Combine(real, "iommu_group"), $"../../../kernel/iommu_groups/{g}");
        }
        if (totalVfs is { } t)
            File.WriteAllText(Path.Combine(real, "sriov_totalvfs"), t + "\n");
        if (numVfs is { } n)
            File.WriteAllText(Path.Combine(real, "sriov_numvfs"), n + "\n");
        if (physfn is not null)
            File.CreateSymbolicLink(Path.Combine(real, "physfn"), "../" + physfn);
        var devices = Path.Combine(_sysfs, "bus", "pci", "devices");
        Directory.CreateDirectory(devices);
        File.CreateSymbolicLink(Path.Combine(devices, address), $"../../../devices/pci0000:00/{address}");
    }

    [Fact]
    public void Passthrough_check_refuses_missing_devices_and_a_disabled_iommu()
    {
        AddDevice("0000:03:00.0", "0x8086", "0x1533", "0x020000", driver: "igb"); // no iommu_group: IOMMU off
        var host = new PciHostDevices(_sysfs);
        var missing = Assert.Throws<PciPassthroughException>(() => PciPassthroughCheck.Check(host, PciAddress.Parse("0000:09:00.0")));
        Assert.Contains("0000:09:00.0", missing.Message);
        Assert.Contains("no such device", missing.Message);
        var noIommu = Assert.Throws<PciPassthroughException>(() => PciPassthroughCheck.Check(host, PciAddress.Parse("0000:03:00.0")));
        Assert.Contains("IOMMU is off", noIommu.Message);
    }

    [Fact]
    public void Passthrough_check_refuses_a_group_shared_with_a_host_bound_device_and_warns_when_not_vfio_bound()
    {
        AddDevice("0000:05:00.0", "0x10de", "0x1eb8", "0x030000", driver: "vfio-pci", group: 7);
        AddDevice("0000:05:00.1", "0x10de", "0x10f8", "0x040300", driver: "snd_hda_intel", group: 7);
        AddDevice("0000:06:00.0", "0x8086", "0x1533", "0x020000", driver: "igb", group: 8);
        AddDevice("0000:00:1c.0", "0x8086", "0xa110", "0x060400", driver: "pcieport", group: 8); // a bridge in the group is fine
        var host = new PciHostDevices(_sysfs);
        var shared = Assert.Throws<PciPassthroughException>(() => PciPassthroughCheck.Check(host, PciAddress.Parse("0000:05:00.0")));
        Assert.Contains("IOMMU group 7 also holds 0000:05:00.1", shared.Message);
        Assert.Contains("snd_hda_intel", shared.Message);
        var ready = PciPassthroughCheck.Check(host, PciAddress.Parse("0000:06:00.0"));
        Assert.Contains(ready.Warnings, w => w.Contains("not vfio-pci"));
    }

    [Fact]
    public void Reads_ids_class_driver_iommu_group_and_sriov()
    {
        AddDevice("0000:00:00.0", "0x8086", "0x1237", "0x060000");
        AddDevice("0000:01:00.0", "0x8086", "0x1572", "0x020000", driver: "i40e", group: 12, totalVfs: 64, numVfs: 2);
        AddDevice("0000:01:00.1", "0x8086", "0x1572", "0x020000", driver: "i40e", group: 12);
        AddDevice("0000:01:02.0", "0x8086", "0x154c", "0x020000", driver: "vfio-pci", group: 40, physfn: "0000:01:00.0");

        var devices = new PciHostDevices(_sysfs).List();

        Assert.Equal(new[] { "0000:00:00.0", "0000:01:00.0", "0000:01:00.1", "0000:01:02.0" }, devices.Select(d => d.Address.ToString()));
        var host = devices[0];
        Assert.Null(host.Driver);
        Assert.Null(host.IommuGroup);
        Assert.Equal("Host bridge", host.ClassName);
        Assert.Null(host.NumaNode);

        var pf = devices[1];
        Assert.Equal((ushort)0x8086, pf.VendorId);
        Assert.Equal((ushort)0x1572, pf.DeviceId);
        Assert.Equal("8086:1572", pf.VendorDevice);
        Assert.Equal(0x020000u, pf.ClassCode);
        Assert.Equal("Ethernet controller", pf.ClassName);
        Assert.Equal("i40e", pf.Driver);
        Assert.Equal(12, pf.IommuGroup);
        Assert.Equal(new[] { PciAddress.Parse("0000:01:00.0"), PciAddress.Parse("0000:01:00.1") }, pf.IommuGroupMembers);
        Assert.Equal(64, pf.SriovTotalVfs);
        Assert.Equal(2, pf.SriovNumVfs);
        Assert.False(pf.IsVirtualFunction);
        Assert.False(pf.IsVfioBound);

        var vf = devices[3];
        Assert.True(vf.IsVirtualFunction);
        Assert.Equal(PciAddress.Parse("0000:01:00.0"), vf.PhysicalFunction);
        Assert.True(vf.IsVfioBound);
        Assert.Null(vf.SriovTotalVfs);
    }

    [Fact]
    public void Missing_sysfs_or_device_reads_as_nothing()
    {
        Directory.CreateDirectory(_sysfs);
        Assert.Empty(new PciHostDevices(_sysfs).List());
        Assert.Null(new PciHostDevices(_sysfs).TryRead(PciAddress.Parse("0000:09:00.0")));
    }
}

public sealed class SerialConsoleTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), "kps-serial-" + Guid.NewGuid().ToString("N")[..8] + ".log");

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void Reads_all_or_the_last_lines()
    {
        File.WriteAllText(_path, "one\r\ntwo\nthree\nfour\n");
        Assert.Equal(new[] { "one", "two", "three", "four" }, SerialLogReader.ReadLines(_path));
        Assert.Equal(new[] { "three", "four" }, SerialLogReader.ReadLines(_path, 2));
        Assert.Equal(new[] { "one", "two", "three", "four" }, SerialLogReader.ReadLines(_path, 10));
        Assert.Empty(SerialLogReader.ReadLines(_path, 0));
        File.WriteAllText(_path, "a\nb\npartial");
        Assert.Equal(new[] { "b", "partial" }, SerialLogReader.ReadLines(_path, 2));
    }

    [Fact]
    public void Tail_of_a_large_log_reads_from_the_end()
    {
        var builder = new StringBuilder();
        for (var i = 0; i < 50_000; i++)
            builder.Append("line ").Append(i).Append('\n');
        File.WriteAllText(_path, builder.ToString());
        Assert.Equal(new[] { "line 49997", "line 49998", "line 49999" }, SerialLogReader.ReadLines(_path, 3));
    }

    [Fact]
    public void A_missing_log_has_no_lines() => Assert.Empty(SerialLogReader.ReadLines(_path + ".none", 5));
}
