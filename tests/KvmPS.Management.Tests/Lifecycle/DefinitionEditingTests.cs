using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// The definition edits every front end shares (<see cref="VmSettingsChange"/>, disk attach/detach, adapters,
/// PCI functions): the rules that used to live in the cmdlets.
/// </summary>
public sealed class DefinitionEditingTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly VmManager _manager;

    public DefinitionEditingTests() => _manager = new VmManager(VmStore.Open(_root.Path), diskImageCreator: new StorageDiskImageCreator());

    public void Dispose() => _root.Dispose();

    private VmDefinition Stored(string name) => _manager.GetDefinition(name);

    [Fact]
    public void A_new_definition_takes_the_documented_defaults()
    {
        var definition = new VmSettingsChange().ToNewDefinition("d");
        Assert.Equal((VcpuSettings.Fixed(1), MemorySettings.Fixed(256L << 20)), (definition.Vcpus, definition.Memory));
        Assert.IsType<DefaultGuestBoot>(definition.Boot);

        var sized = new VmSettingsChange { ProcessorCount = 4, MemoryStartupBytes = 1L << 30, MemoryMinimumBytes = 512L << 20 }.ToNewDefinition("s");
        Assert.Equal(new VcpuSettings(4, 4), sized.Vcpus);
        Assert.Equal(new MemorySettings(1L << 30, 512L << 20, 1L << 30), sized.Memory);

        var e = Assert.Throws<VmDefinitionException>(() => new VmSettingsChange { ProcessorCount = 4, MaximumProcessorCount = 2 }.ToNewDefinition("x"));
        Assert.Equal(("VcpuCount", "must not exceed VcpuMaximum (4 > 2)"), (e.Property, e.Reason));
    }

    [Fact]
    public void Memory_stays_fixed_when_only_startup_changes_and_a_range_widens_to_include_it()
    {
        var fixedSize = TestDefinitions.Minimal("m");
        Assert.Equal(MemorySettings.Fixed(512L << 20), new VmSettingsChange { MemoryStartupBytes = 512L << 20 }.ApplyTo(fixedSize).Memory);

        var ranged = fixedSize with { Memory = new MemorySettings(256L << 20, 128L << 20, 512L << 20) };
        Assert.Equal(new MemorySettings(1L << 30, 128L << 20, 1L << 30), new VmSettingsChange { MemoryStartupBytes = 1L << 30 }.ApplyTo(ranged).Memory);
        Assert.Equal(new MemorySettings(64L << 20, 64L << 20, 512L << 20), new VmSettingsChange { MemoryStartupBytes = 64L << 20 }.ApplyTo(ranged).Memory);
        // The setting given is blamed, not the startup memory it no longer fits.
        Assert.Equal("MemoryMinimumBytes", Assert.Throws<VmDefinitionException>(() => new VmSettingsChange { MemoryMinimumBytes = 1L << 30 }.ApplyTo(fixedSize)).Property);
        Assert.Equal("MemoryMaximumBytes", Assert.Throws<VmDefinitionException>(() => new VmSettingsChange { MemoryMaximumBytes = 128L << 20 }.ApplyTo(fixedSize)).Property);
    }

    [Fact]
    public void Boot_rules_kernel_initrd_and_arguments()
    {
        var vm = TestDefinitions.Minimal("b");
        var kernel = new VmSettingsChange { KernelPath = "/k", InitrdPath = "/i", KernelArguments = "quiet" }.ApplyTo(vm);
        Assert.Equal(new DirectKernelBoot("/k", "/i", "quiet"), kernel.Boot);
        // Changing only the arguments keeps kernel and initrd; an empty initrd removes it; an empty kernel returns to the built-in guest.
        Assert.Equal(new DirectKernelBoot("/k", "/i", "debug"), new VmSettingsChange { KernelArguments = "debug" }.ApplyTo(kernel).Boot);
        Assert.Equal(new DirectKernelBoot("/k", null, "quiet"), new VmSettingsChange { InitrdPath = "" }.ApplyTo(kernel).Boot);
        Assert.Equal(DefaultGuestBoot.Instance, new VmSettingsChange { KernelPath = "" }.ApplyTo(kernel).Boot);

        var noKernel = Assert.Throws<VmDefinitionException>(() => new VmSettingsChange { InitrdPath = "/i" }.ApplyTo(vm));
        Assert.Equal("Boot.InitrdPath", noKernel.Property);
        Assert.Equal("Boot.Cmdline", Assert.Throws<VmDefinitionException>(() => new VmSettingsChange { KernelArguments = "x" }.ApplyTo(vm)).Property);
    }

    [Fact]
    public void Generated_macs_follow_one_rule_for_manifests_and_edits()
    {
        _manager.New(TestDefinitions.Minimal("n"));
        _manager.AddNetworkAdapter("n", null, "br0");
        // Adapter 1 is given the address adapter 2 would get: adapter 2 skips to the next free one.
        _manager.AddNetworkAdapter("n", "tap1", null, MacAddress.GenerateLocallyAdministered("n/2"));
        _manager.AddNetworkAdapter("n", null, "br1");
        var macs = Stored("n").NetworkAdapters.Select(a => a.MacAddress).ToList();
        Assert.Equal(MacAddress.GenerateLocallyAdministered("n/0"), macs[0]);
        Assert.Equal(MacAddress.GenerateLocallyAdministered("n/3"), macs[2]);
        Assert.Equal(3, macs.Distinct().Count());

        // A manifest where an explicit MAC takes the address a generated one would get: the generated one moves on.
        var manifest = VmDefinitionReader.FromDictionary(new System.Collections.Hashtable
        {
            ["Name"] = "n",
            ["MemoryStartupBytes"] = "256MB",
            ["NetworkAdapters"] = new object[]
            {
                new System.Collections.Hashtable { ["Bridge"] = "br0" },
                new System.Collections.Hashtable { ["Bridge"] = "br1" },
                new System.Collections.Hashtable { ["Tap"] = "t", ["MacAddress"] = MacAddress.GenerateLocallyAdministered("n/1").ToString() },
            },
        });
        Assert.Equal(3, manifest.NetworkAdapters.Select(a => a.MacAddress).Distinct().Count());
        Assert.Equal(MacAddress.GenerateLocallyAdministered("n/2"), manifest.NetworkAdapters[1].MacAddress);

        Assert.Throws<ManagementValidationException>(() => _manager.AddNetworkAdapter("n", "t", "b"));
        Assert.Throws<VmDeviceNotFoundException>(() => _manager.RemoveNetworkAdapters("n", new[] { MacAddress.Parse("52:54:00:00:00:99") }));
    }

    [Fact]
    public void Disks_attach_with_creation_roll_back_on_refusal_and_detach_by_either_path()
    {
        _manager.New(TestDefinitions.Minimal("d"));
        _manager.AttachDisk("d", new DiskAttachRequest("data.qcow2", CreateSizeBytes: 1L << 20));
        var disk = Assert.Single(Stored("d").Disks);
        Assert.Equal(DiskFormat.Qcow2, disk.Format);
        var image = Path.Combine(_root.Path, "vms", "d", "disks", "data.qcow2");
        Assert.True(File.Exists(image));

        Assert.Throws<DiskImageNotFoundException>(() => _manager.AttachDisk("d", new DiskAttachRequest("/nonexistent/x.raw")));
        Assert.Equal("Disks.Path", Assert.Throws<ManagementValidationException>(() => _manager.AttachDisk("d", new DiskAttachRequest("../escape.raw", CreateSizeBytes: 1L << 20))).Property);
        // Refused by the definition before any image exists.
        Assert.Throws<VmDefinitionException>(() => _manager.AttachDisk("d", new DiskAttachRequest("r.raw", DiskFormat.Raw, 1L << 20, "base.raw")));
        Assert.False(File.Exists(Path.Combine(_root.Path, "vms", "d", "disks", "r.raw")));

        // The definition refuses the same path twice: the image made for the refused disk is deleted again.
        var outside = Path.Combine(_root.Path, "outside.qcow2");
        _manager.AttachDisk("d", new DiskAttachRequest(outside, CreateSizeBytes: 1L << 20));
        File.Delete(outside);
        Assert.Throws<VmDefinitionException>(() => _manager.AttachDisk("d", new DiskAttachRequest(outside, CreateSizeBytes: 1L << 20)));
        Assert.False(File.Exists(outside));

        Assert.Equal("data.qcow2", _manager.FindDisk("d", image).Path);
        _manager.DetachDisk("d", image);
        _manager.DetachDisk("d", outside);
        Assert.Empty(Stored("d").Disks);
        Assert.True(File.Exists(image), "detaching keeps the image");
        var missing = Assert.Throws<VmDeviceNotFoundException>(() => _manager.DetachDisk("d", "data.qcow2"));
        Assert.Equal("data.qcow2", missing.Device);
    }

    [Fact]
    public void The_default_disk_format_is_one_rule()
    {
        Assert.Equal(DiskFormat.Qcow2, DiskDefinition.DefaultFormat("a.QCOW2", null));
        Assert.Equal(DiskFormat.Qcow2, DiskDefinition.DefaultFormat("a.img", "base.raw"));
        Assert.Equal(DiskFormat.Raw, DiskDefinition.DefaultFormat("a.img", null));
        // A manifest disk with a backing image and no format is qcow2, as Add-KvmDisk makes it.
        var definition = VmDefinitionReader.FromDictionary(new System.Collections.Hashtable
        {
            ["Name"] = "f",
            ["MemoryStartupBytes"] = "256MB",
            ["Disks"] = new object[] { new System.Collections.Hashtable { ["Path"] = "top.img", ["BackingImagePath"] = "base.raw" } },
        });
        Assert.Equal(DiskFormat.Qcow2, Assert.Single(definition.Disks).Format);
    }

    [Fact]
    public void Pci_functions_are_added_once_and_removed()
    {
        _manager.New(TestDefinitions.Minimal("p"));
        var address = PciAddress.Parse("0000:03:00.0");
        _manager.AddPciPassthrough("p", new[] { address });
        Assert.Throws<VmDeviceAlreadyAttachedException>(() => _manager.AddPciPassthrough("p", new[] { address }));
        Assert.Throws<VmDeviceNotFoundException>(() => _manager.RemovePciPassthrough("p", new[] { PciAddress.Parse("0000:04:00.0") }));
        _manager.RemovePciPassthrough("p", new[] { address });
        Assert.Empty(Stored("p").PciPassthrough);
    }

    [Theory]
    [InlineData(1, "vCPU", "1 vCPU")]
    [InlineData(2, "vCPU", "2 vCPUs")]
    [InlineData(0, "disk", "0 disks")]
    public void Counts_read_naturally(long count, string noun, string expected) => Assert.Equal(expected, DisplayText.Count(count, noun));

    [Theory]
    [InlineData(256L << 20, "256 MiB")]
    [InlineData(1L << 30, "1 GiB")]
    [InlineData(1536L << 20, "1536 MiB")]
    [InlineData((1536L << 20) + 1, "1.5 GiB")]
    [InlineData(4096, "4 KiB")]
    [InlineData(1000, "1000 bytes")]
    [InlineData(1, "1 byte")]
    public void Sizes_read_in_binary_units(long bytes, string expected) => Assert.Equal(expected, DisplayText.Bytes(bytes));

    [Fact]
    public void Definition_parts_print_as_text_not_record_dumps()
    {
        Assert.Equal("Built-in guest", DefaultGuestBoot.Instance.ToString());
        Assert.Equal("Built-in guest (kvmps.run=info)", new DefaultGuestBoot("kvmps.run=info").ToString());
        Assert.Equal("Kernel /k, initrd /i (quiet)", new DirectKernelBoot("/k", "/i", "quiet").ToString());
        Assert.Equal("data.raw (raw, 1 MiB, read-only)", new DiskDefinition("data.raw", DiskFormat.Raw, 1L << 20, ReadOnly: true).ToString());
        Assert.Equal("52:54:00:00:00:01 on tap t0", new NetworkAdapterDefinition("t0", null, MacAddress.Parse("52:54:00:00:00:01")).ToString());
        Assert.Equal("256 MiB (128 MiB to 1 GiB)", new MemorySettings(256L << 20, 128L << 20, 1L << 30).ToString());
        Assert.Equal("2 (maximum 4)", new VcpuSettings(2, 4).ToString());
    }
}
