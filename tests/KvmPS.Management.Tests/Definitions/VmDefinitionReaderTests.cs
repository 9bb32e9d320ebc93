using System.Collections;
using System.Collections.Specialized;
using KvmPS.Management.Definitions;
using KvmPS.Management.Manifests;

namespace KvmPS.Management.Tests.Definitions;

public sealed class VmDefinitionReaderTests
{
    private static IDictionary FromManifest(string text) => (OrderedDictionary)PsdReader.ParseDataFile(text).ToPlainObject()!;

    private static VmDefinitionException Invalid(string manifest) =>
        Assert.Throws<VmDefinitionException>(() => VmDefinitionReader.FromDictionary(FromManifest(manifest)));

    [Fact]
    public void Reads_a_full_manifest()
    {
        var definition = VmDefinitionReader.FromDictionary(FromManifest("""
            @{
                name               = 'web-01'
                MemoryStartupBytes = 1GB
                MemoryMinimumBytes = '512MB'
                MemoryMaximumBytes = 4GB
                VcpuCount          = 2
                VcpuMaximum        = 8
                Boot               = @{ KernelPath = '/boot/vmlinuz'; InitrdPath = '/boot/initrd'; Cmdline = 'console=ttyS0' }
                Disks              = @(
                    @{ Path = 'root.qcow2'; SizeBytes = 10GB; BackingImagePath = '/images/base.qcow2' }
                    @{ SizeBytes = '1.5GB' }
                    @{ Path = '/srv/x.iso'; ReadOnly = $true; Format = 'RAW' }
                )
                NetworkAdapters    = @( @{ Bridge = 'br0' }, @{ Tap = 'tap7'; MacAddress = '52:54:00:01:02:03' } )
                BalloonEnabled     = $true
                PciPassthrough     = '0000:01:00.0'
                VfioUserDevices    = @( '/run/dev.sock', '/run/dev2.sock' )
                HugePages          = 'thp'
                KsmEnabled         = $true
                NumaNode           = 1
                Autostart          = $true
                Notes              = 'hello'
            }
            """));
        Assert.Equal("web-01", definition.Name);
        Assert.Equal(new MemorySettings(1L << 30, 512L << 20, 4L << 30), definition.Memory);
        Assert.Equal(new VcpuSettings(2, 8), definition.Vcpus);
        Assert.Equal(new DirectKernelBoot("/boot/vmlinuz", "/boot/initrd", "console=ttyS0"), definition.Boot);
        Assert.Equal(new DiskDefinition("root.qcow2", DiskFormat.Qcow2, 10L << 30, false, "/images/base.qcow2"), definition.Disks[0]);
        Assert.Equal(new DiskDefinition("disk1.raw", DiskFormat.Raw, 1610612736L), definition.Disks[1]);
        Assert.Equal(new DiskDefinition("/srv/x.iso", DiskFormat.Raw, null, true), definition.Disks[2]);
        Assert.Equal("br0", definition.NetworkAdapters[0].BridgeName);
        Assert.Equal(MacAddress.GenerateLocallyAdministered("web-01/0"), definition.NetworkAdapters[0].MacAddress);
        Assert.Equal("52:54:00:01:02:03", definition.NetworkAdapters[1].MacAddress.ToString());
        Assert.True(definition.BalloonEnabled);
        Assert.Equal(new[] { PciAddress.Parse("0000:01:00.0") }, definition.PciPassthrough);
        Assert.Equal(new[] { "/run/dev.sock", "/run/dev2.sock" }, definition.VfioUserDevices);
        Assert.Equal(new MemoryBackingSettings(HugePagesMode.Thp, true, 1), definition.MemoryBacking);
        Assert.True(definition.Autostart);
        Assert.Equal("hello", definition.Notes);
    }

    [Fact]
    public void Defaults_for_a_minimal_manifest()
    {
        var definition = VmDefinitionReader.FromDictionary(FromManifest("@{ Name = 'a'; MemoryStartupBytes = 256MB }"));
        Assert.Equal(TestDefinitions.Minimal("a"), definition);
        Assert.IsType<DefaultGuestBoot>(definition.Boot);
    }

    [Fact]
    public void Firmware_boot()
    {
        var definition = VmDefinitionReader.FromDictionary(FromManifest(
            "@{ Name = 'a'; MemoryStartupBytes = 256MB; Boot = @{ FirmwarePath = '/fw.bin'; BootDiskIndex = 1 }; Disks = @{ Path = 'a.raw' }, @{ Path = 'b.raw' } }"));
        Assert.Equal(new FirmwareBoot("/fw.bin", 1), definition.Boot);
    }

    [Theory]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Memroy = 1 }", "a", "Memroy", "unknown key 'Memroy'")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Disks = @{ Path = 'x'; Sise = 1 } }", "a", "Disks[0].Sise", "unknown key 'Sise'")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Boot = @{ Kernel = 'x' } }", "a", "Boot.Kernel", "unknown key 'Kernel'")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; NetworkAdapters = @{ Tap = 't'; Mac = 'x' } }", "a", "NetworkAdapters[0].Mac", "unknown key")]
    [InlineData("@{ MemoryStartupBytes = 1GB }", "", "Name", "is required")]
    [InlineData("@{ Name = 'bad name'; MemoryStartupBytes = 1GB }", "bad name", "Name", "1-63 characters")]
    [InlineData("@{ Name = 5; MemoryStartupBytes = 1GB }", "", "Name", "must be a string, not the number 5")]
    [InlineData("@{ Name = 'a' }", "a", "MemoryStartupBytes", "is required")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 'lots' }", "a", "MemoryStartupBytes", "Invalid size 'lots'")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = $true }", "a", "MemoryStartupBytes", "must be a size")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; MemoryMaximumBytes = 512MB }", "a", "MemoryStartupBytes", "within")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; VcpuCount = 'two' }", "a", "VcpuCount", "must be a whole number")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; VcpuCount = 1.5 }", "a", "VcpuCount", "must be a whole number")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Autostart = 'yes' }", "a", "Autostart", "must be $true or $false")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; HugePages = 'giant' }", "a", "HugePages", "'giant' is not one of: none, thp, hugetlbfs")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Boot = 'x' }", "a", "Boot", "must be a hashtable")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Boot = @{ KernelPath = 'k'; FirmwarePath = 'f' } }", "a", "Boot", "not both")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Boot = @{ InitrdPath = 'x' } }", "a", "Boot.InitrdPath", "needs KernelPath")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Boot = @{ FirmwarePath = 'f'; Cmdline = 'x' } }", "a", "Boot.Cmdline", "only applies to direct kernel boot")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Boot = @{ KernelPath = 'k'; BootDiskIndex = 0 } }", "a", "Boot.BootDiskIndex", "only applies to firmware boot")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Disks = 'x.raw' }", "a", "Disks[0]", "must be a hashtable, not the string 'x.raw'")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Disks = @{ Format = 'vmdk' } }", "a", "Disks[0].Format", "not one of: raw, qcow2")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; Disks = @{ SizeBytes = '1.3KB' } }", "a", "Disks[0].SizeBytes", "not a whole number of bytes")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; NetworkAdapters = @{ Tap = 't'; MacAddress = 'zz' } }", "a", "NetworkAdapters[0].MacAddress", "Invalid MAC address 'zz'")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; PciPassthrough = '1:0.0' }", "a", "PciPassthrough[0]", "Invalid PCI address '1:0.0'")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; PciPassthrough = 5 }", "a", "PciPassthrough[0]", "must be a PCI address string")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; VfioUserDevices = 5 }", "a", "VfioUserDevices[0]", "must be an absolute socket path")]
    [InlineData("@{ Name = 'a'; MemoryStartupBytes = 1GB; VfioUserDevices = 'dev.sock' }", "a", "VfioUserDevices[0]", "must be an absolute path")]
    public void Errors_name_the_vm_and_the_property(string manifest, string vmName, string property, string reason)
    {
        var error = Invalid(manifest);
        Assert.Equal(vmName, error.VmName);
        Assert.Equal(property, error.Property);
        Assert.Contains(reason, error.Reason);
    }

    [Fact]
    public void Keys_differing_only_by_case_are_rejected_for_plain_dictionaries()
    {
        var map = new Dictionary<string, object?> { ["Name"] = "a", ["MemoryStartupBytes"] = 1L << 30, ["memorystartupbytes"] = 1L << 30 };
        var error = Assert.Throws<VmDefinitionException>(() => VmDefinitionReader.FromDictionary(map));
        Assert.Contains("given twice", error.Reason);
    }
}
