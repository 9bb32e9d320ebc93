using KvmPS.Management.Definitions;

namespace KvmPS.Management.Tests.Definitions;

public sealed class VmDefinitionValidationTests
{
    private static readonly VmDefinition Valid = TestDefinitions.Full("web-01");

    private static void AssertInvalid(VmDefinition definition, string property, string reason)
    {
        var error = Assert.Throws<VmDefinitionException>(() => definition.Validate());
        Assert.Equal(definition.Name, error.VmName);
        Assert.Equal(property, error.Property);
        Assert.Contains(reason, error.Reason);
        Assert.StartsWith($"VM '{definition.Name}': {property}: ", error.Message);
    }

    [Fact]
    public void Full_and_minimal_definitions_are_valid()
    {
        Valid.Validate();
        TestDefinitions.Minimal("a").Validate();
    }

    [Theory]
    [InlineData("a")]
    [InlineData("A1")]
    [InlineData("web-01.prod_x")]
    [InlineData("0")]
    public void Valid_names(string name) => (Valid with { Name = name }).Validate();

    [Theory]
    [InlineData("")]
    [InlineData("-web")]
    [InlineData(".hidden")]
    [InlineData("_x")]
    [InlineData("a/b")]
    [InlineData("..")]
    [InlineData("has space")]
    [InlineData("ünïcode")]
    public void Invalid_names(string name) => AssertInvalid(Valid with { Name = name }, "Name", "1-63 characters");

    [Fact]
    public void Name_length_limit()
    {
        (Valid with { Name = new string('a', 63) }).Validate();
        AssertInvalid(Valid with { Name = new string('a', 64) }, "Name", "1-63");
    }

    [Fact]
    public void Memory_rules()
    {
        AssertInvalid(Valid with { Memory = new MemorySettings(0, 0, 0) }, "MemoryStartupBytes", "must be positive");
        AssertInvalid(Valid with { Memory = new MemorySettings(1L << 30, -4096, 1L << 30) }, "MemoryMinimumBytes", "must be positive");
        AssertInvalid(Valid with { Memory = new MemorySettings(1000, 1000, 1000) }, "MemoryStartupBytes", "multiple of 4096");
        AssertInvalid(Valid with { Memory = new MemorySettings(1L << 30, 1L << 30, (1L << 30) + 100) }, "MemoryMaximumBytes", "multiple of 4096");
        AssertInvalid(Valid with { Memory = new MemorySettings(1L << 30, 2L << 30, 1L << 30) }, "MemoryStartupBytes", "within");
        AssertInvalid(Valid with { Memory = new MemorySettings(8L << 30, 1L << 30, 4L << 30) }, "MemoryStartupBytes", "within [MemoryMinimumBytes, MemoryMaximumBytes]");
        AssertInvalid(Valid with { Memory = new MemorySettings(256L << 20, 512L << 20, 4L << 30) }, "MemoryStartupBytes", "within");
    }

    [Fact]
    public void A_maximum_above_the_startup_memory_is_whole_2MiB_hot_plug_blocks()
    {
        AssertInvalid(Valid with { Memory = new MemorySettings(256L << 20, 256L << 20, (512L << 20) + 4096) }, "MemoryMaximumBytes", "multiple of 2 MiB");
        (Valid with { Memory = new MemorySettings(256L << 20, 256L << 20, 514L << 20) }).Validate();
        // Equal to the startup memory there is nothing to plug: the page size is all it needs.
        (Valid with { Memory = MemorySettings.Fixed((256L << 20) + 4096) }).Validate();
    }

    [Fact]
    public void Hugetlbfs_needs_2MiB_multiples()
    {
        var backing = new MemoryBackingSettings(HugePagesMode.Hugetlbfs);
        (Valid with { MemoryBacking = backing }).Validate();
        AssertInvalid(Valid with { MemoryBacking = backing, Memory = MemorySettings.Fixed((1L << 30) + 4096) }, "MemoryStartupBytes", "2 MiB");
    }

    [Fact]
    public void Numa_node_range()
    {
        AssertInvalid(Valid with { MemoryBacking = new MemoryBackingSettings(NumaNode: -1) }, "NumaNode", "between 0 and 1023");
        AssertInvalid(Valid with { MemoryBacking = new MemoryBackingSettings(NumaNode: 4096) }, "NumaNode", "between 0 and 1023");
    }

    [Fact]
    public void Vcpu_rules()
    {
        (Valid with { Vcpus = new VcpuSettings(255, 255) }).Validate();
        AssertInvalid(Valid with { Vcpus = new VcpuSettings(0, 4) }, "VcpuCount", "at least 1");
        AssertInvalid(Valid with { Vcpus = new VcpuSettings(4, 2) }, "VcpuCount", "must not exceed VcpuMaximum");
        AssertInvalid(Valid with { Vcpus = new VcpuSettings(1, 256) }, "VcpuMaximum", "at most 255");
    }

    [Fact]
    public void Boot_rules()
    {
        (Valid with { Boot = new DirectKernelBoot("/boot/vmlinuz", "/boot/initrd", "console=ttyS0") }).Validate();
        (Valid with { Boot = DefaultGuestBoot.Instance }).Validate();
        AssertInvalid(Valid with { Boot = new DirectKernelBoot(" ") }, "Boot.KernelPath", "is required");
        AssertInvalid(Valid with { Boot = new DirectKernelBoot("/k", "") }, "Boot.InitrdPath", "is required");
        AssertInvalid(Valid with { Boot = new DirectKernelBoot("/k", null, "a\0b") }, "Boot.Cmdline", "NUL");
        AssertInvalid(Valid with { Boot = new DirectKernelBoot("/k", null, new string('x', 65536)) }, "Boot.Cmdline", "at most 65535 bytes");
        AssertInvalid(Valid with { Boot = new FirmwareBoot("") }, "Boot.FirmwarePath", "is required");
        AssertInvalid(Valid with { Boot = new FirmwareBoot("/fw", 3) }, "Boot.BootDiskIndex", "0 to 2");
        AssertInvalid(Valid with { Boot = new FirmwareBoot("/fw"), Disks = ValueList<DiskDefinition>.Empty }, "Boot.BootDiskIndex", "no disks");
    }

    [Fact]
    public void Disk_rules()
    {
        AssertInvalid(Valid with { Disks = new[] { new DiskDefinition("") } }, "Disks[0].Path", "is required");
        AssertInvalid(Valid with { Disks = new[] { new DiskDefinition("a", (DiskFormat)7) } }, "Disks[0].Format", "raw or qcow2");
        AssertInvalid(Valid with { Disks = new[] { new DiskDefinition("a", DiskFormat.Raw, 1000) } }, "Disks[0].SizeBytes", "multiple of 512");
        AssertInvalid(Valid with { Disks = new[] { new DiskDefinition("a", DiskFormat.Raw, 0) } }, "Disks[0].SizeBytes", "positive");
        AssertInvalid(Valid with { Disks = new[] { new DiskDefinition("a", DiskFormat.Raw, null, false, "/base") } }, "Disks[0].BackingImagePath", "needs Format = qcow2");
        AssertInvalid(Valid with { Disks = new[] { new DiskDefinition("a"), new DiskDefinition("a") } }, "Disks[1].Path", "already used by Disks[0]");
    }

    [Fact]
    public void Network_adapter_rules()
    {
        var mac = MacAddress.Parse("52:54:00:00:00:01");
        AssertInvalid(Valid with { NetworkAdapters = new[] { new NetworkAdapterDefinition(null, null, mac) } }, "NetworkAdapters[0]", "exactly one of Tap, Bridge, Network or SriovVf");
        AssertInvalid(Valid with { NetworkAdapters = new[] { new NetworkAdapterDefinition("t", "b", mac) } }, "NetworkAdapters[0]", "exactly one of Tap, Bridge, Network or SriovVf");
        AssertInvalid(Valid with { NetworkAdapters = new[] { new NetworkAdapterDefinition(null, "b", mac, "lab") } }, "NetworkAdapters[0]", "exactly one of Tap, Bridge, Network or SriovVf");
        AssertInvalid(Valid with { NetworkAdapters = new[] { new NetworkAdapterDefinition(null, null, mac, "la b") } }, "NetworkAdapters[0].Network", "not a valid network name");
        AssertInvalid(Valid with { NetworkAdapters = new[] { new NetworkAdapterDefinition("averyveryverylongname", null, mac) } }, "NetworkAdapters[0].Tap", "not a valid interface name");
        AssertInvalid(Valid with { NetworkAdapters = new[] { new NetworkAdapterDefinition(null, "br/0", mac) } }, "NetworkAdapters[0].Bridge", "not a valid interface name");
        AssertInvalid(Valid with { NetworkAdapters = new[] { new NetworkAdapterDefinition("tap0", null, MacAddress.Parse("01:00:5e:00:00:01")) } }, "NetworkAdapters[0].MacAddress", "unicast");
        AssertInvalid(Valid with { NetworkAdapters = new[] { new NetworkAdapterDefinition("tap0", null, MacAddress.Parse("00:00:00:00:00:00")) } }, "NetworkAdapters[0].MacAddress", "not all zeros");
        AssertInvalid(Valid with { NetworkAdapters = new[] { new NetworkAdapterDefinition("tap0", null, mac), new NetworkAdapterDefinition("tap1", null, mac) } }, "NetworkAdapters[1].MacAddress", "already used by NetworkAdapters[0]");
    }

    [Fact]
    public void Pci_passthrough_rules()
    {
        var address = PciAddress.Parse("0000:01:00.0");
        AssertInvalid(Valid with { PciPassthrough = new[] { address, address } }, "PciPassthrough[1]", "listed twice");
        AssertInvalid(Valid with { PciPassthrough = new[] { new PciAddress(0, 1, 0x20, 0) } }, "PciPassthrough[0]", "not a valid PCI address");
    }

    [Fact]
    public void Vfio_user_device_rules()
    {
        AssertInvalid(Valid with { VfioUserDevices = new[] { "/run/a.sock", "/run/a.sock" } }, "VfioUserDevices[1]", "listed twice");
        AssertInvalid(Valid with { VfioUserDevices = new[] { "run/a.sock" } }, "VfioUserDevices[0]", "absolute path");
        AssertInvalid(Valid with { VfioUserDevices = new[] { "" } }, "VfioUserDevices[0]", "absolute path");
        AssertInvalid(Valid with { VfioUserDevices = new[] { "/run/" + new string('s', 120) } }, "VfioUserDevices[0]", "longer than a Unix socket path");
        AssertInvalid(Valid with { VfioUserDevices = Enumerable.Range(0, 9).Select(i => $"/run/d{i}.sock").ToArray() }, "VfioUserDevices", "at most 8 passthrough devices");
        Assert.Equal(new[] { "/run/a.sock" }, (Valid with { VfioUserDevices = new[] { "/run/a.sock" } }).Validate().VfioUserDevices);
    }

    [Fact]
    public void Records_compare_by_value_including_lists()
    {
        Assert.Equal(TestDefinitions.Full(), TestDefinitions.Full());
        Assert.NotEqual(TestDefinitions.Full(), TestDefinitions.Full() with { Disks = TestDefinitions.Full().Disks.Take(2).ToArray() });
    }
}
