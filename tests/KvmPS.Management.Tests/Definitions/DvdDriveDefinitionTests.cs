using System.Collections;
using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Definitions;

/// <summary>DVD drives, boot order and display: schema, vm.json, validation naming the input, and the VMM configuration built from them.</summary>
public sealed class DvdDriveDefinitionTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A minimal ISO 9660 image: "CD001" at byte 0x8001 of a 36 KiB file.</summary>
    internal static string MakeIso(string directory, string name = "install.iso")
    {
        var bytes = new byte[0x9000];
        bytes[0x8000] = 1;
        "CD001"u8.CopyTo(bytes.AsSpan(0x8001));
        var path = Path.Combine(directory, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static VmDefinition Read(Hashtable values) => VmDefinitionReader.FromDictionary(values);

    private static Hashtable Base(string name = "inst") => new()
    {
        ["Name"] = name, ["MemoryStartupBytes"] = "256MB", ["Boot"] = new Hashtable { ["FirmwarePath"] = "seabios" },
        ["Disks"] = new object[] { new Hashtable { ["Path"] = "/d/root.raw" } },
    };

    [Fact]
    public void Manifest_keys_read_into_the_definition_and_round_trip_through_vm_json()
    {
        var values = Base();
        values["DvdDrives"] = new object[] { new Hashtable { ["Path"] = "/srv/iso/a.iso" }, new Hashtable(), new Hashtable { ["Volume"] = "b.iso" } };
        values["BootOrder"] = new object[] { "dvd", "Disk", "NETWORK" };
        values["BootOnce"] = "Network";
        values["Display"] = new Hashtable { ["Vnc"] = "127.0.0.1:5901", ["PasswordFile"] = "/etc/kvmps/vnc.pw" };
        var definition = Read(values);

        Assert.Equal(["/srv/iso/a.iso", null, "pool://default/b.iso"], definition.DvdDrives.Select(d => d.Path));
        Assert.Equal(("default", "b.iso"), (definition.DvdDrives[2].Pool, definition.DvdDrives[2].Volume));
        Assert.Equal([BootDevice.Dvd, BootDevice.Disk, BootDevice.Network], definition.BootOrder);
        Assert.Equal(BootDevice.Network, definition.BootOnce);
        Assert.Equal(new DisplaySettings("127.0.0.1:5901", "/etc/kvmps/vnc.pw"), definition.Display);

        var json = VmDefinitionJson.Serialize(definition);
        Assert.Contains("\"bootOrder\"", json);
        Assert.Equal(definition, VmDefinitionJson.Deserialize(json));
    }

    [Fact]
    public void A_vm_without_them_writes_none_of_the_new_keys()
    {
        var json = VmDefinitionJson.Serialize(TestDefinitions.Minimal("plain"));
        Assert.DoesNotContain("dvdDrives", json);
        Assert.DoesNotContain("bootOrder", json);
        Assert.DoesNotContain("display", json);
    }

    [Theory]
    [InlineData("BootOrder", "Floppy", "BootOrder[0]", "'Floppy' is not a boot device (one of: Dvd, Disk, Network)")]
    [InlineData("BootOrder", "1", "BootOrder[0]", "is not a boot device")]
    [InlineData("BootOnce", "Usb", "BootOnce", "'Usb' is not one of: dvd, disk, network")]
    public void An_unknown_boot_device_is_refused_naming_it(string key, string value, string property, string reason)
    {
        var values = Base();
        values[key] = key == "BootOrder" ? new object[] { value } : value;
        var e = Assert.Throws<VmDefinitionException>(() => Read(values));
        Assert.Equal(property, e.Property);
        Assert.Contains(reason, e.Message);
        Assert.Contains("'inst'", e.Message);
    }

    [Fact]
    public void Boot_order_twice_the_same_device_or_on_a_kernel_boot_is_refused()
    {
        var values = Base();
        values["BootOrder"] = new object[] { "Dvd", "Disk", "dvd" };
        Assert.Equal("BootOrder[2]", Assert.Throws<VmDefinitionException>(() => Read(values)).Property);

        var kernel = Base();
        kernel["Boot"] = new Hashtable { ["KernelPath"] = "/boot/vmlinuz" };
        kernel["BootOrder"] = new object[] { "Dvd" };
        var e = Assert.Throws<VmDefinitionException>(() => Read(kernel));
        Assert.Equal("BootOrder", e.Property);
        Assert.Contains("firmware boot only", e.Message);
    }

    [Theory]
    [InlineData("0.0.0.0:5901", null, "listens beyond this host")]
    [InlineData("localhost:5901", null, "neither 'unix' nor ADDR:PORT")]
    [InlineData("127.0.0.1:70000", null, "no port between 1 and 65535")]
    [InlineData("", null, "is required")]
    public void A_bad_vnc_setting_is_refused_naming_it(string vnc, string? passwordFile, string reason)
    {
        var values = Base();
        values["Display"] = new Hashtable { ["Vnc"] = vnc, ["PasswordFile"] = passwordFile };
        var e = Assert.Throws<VmDefinitionException>(() => Read(values));
        Assert.Equal("Display.Vnc", e.Property);
        Assert.Contains(reason, e.Message);
    }

    [Fact]
    public void Any_address_with_a_password_file_and_an_unknown_dvd_key_are_judged()
    {
        var values = Base();
        values["Display"] = new Hashtable { ["Vnc"] = "0.0.0.0:5901", ["PasswordFile"] = "/etc/pw" };
        Assert.Equal("0.0.0.0:5901", Read(values).Display!.Tcp);

        values["DvdDrives"] = new object[] { new Hashtable { ["Iso"] = "x.iso" } };
        var e = Assert.Throws<VmDefinitionException>(() => Read(values));
        Assert.Equal("DvdDrives[0].Iso", e.Property);
    }

    [Fact]
    public void A_firmware_vm_may_have_a_dvd_and_no_disk_but_not_neither()
    {
        var values = Base();
        values.Remove("Disks");
        values["DvdDrives"] = new object[] { new Hashtable { ["Path"] = "/x.iso" } };
        Assert.Empty(Read(values).Disks);
        values.Remove("DvdDrives");
        Assert.Equal("Boot.BootDiskIndex", Assert.Throws<VmDefinitionException>(() => Read(values)).Property);
    }

    [Fact]
    public void The_store_refuses_a_missing_iso_a_file_that_is_not_iso_9660_and_one_outside_the_allowed_folders()
    {
        var store = VmStore.Open(Path.Combine(_dir.Path, "store"), allowedPaths: AllowedPaths.Of(Path.Combine(_dir.Path, "store"), [Path.Combine(_dir.Path, "isos")]));
        Directory.CreateDirectory(Path.Combine(_dir.Path, "isos"));
        var good = MakeIso(Path.Combine(_dir.Path, "isos"));
        var notIso = Path.Combine(_dir.Path, "isos", "disk.img");
        File.WriteAllBytes(notIso, new byte[0x9000]);
        var outside = MakeIso(_dir.Path, "outside.iso");
        VmDefinition With(string iso) => TestDefinitions.Minimal("iso") with { DvdDrives = new ValueList<DvdDriveDefinition>([new DvdDriveDefinition(iso)]) };

        store.Create(With(good));

        var missing = Assert.Throws<IsoImageException>(() => store.Update(With(Path.Combine(_dir.Path, "isos", "gone.iso"))));
        Assert.Equal("DvdDrives[0].Path", missing.Property);
        Assert.Contains("gone.iso' does not exist", missing.Message);
        var wrong = Assert.Throws<IsoImageException>(() => store.Update(With(notIso)));
        Assert.Contains($"'{notIso}' is not an ISO 9660 image (no \"CD001\" at byte 0x8001", wrong.Message);
        var refused = Assert.Throws<PathNotAllowedException>(() => store.Update(With(outside)));
        Assert.Equal("DvdDrives[0].Path", refused.Property);
        Assert.Equal(good, store.Get("iso").DvdDrives[0].Path);
    }

    [Fact]
    public void The_vmm_configuration_gets_cdrom_and_display_devices_boot_addresses_and_the_vnc_socket()
    {
        var definition = new VmDefinition
        {
            Name = "cfg",
            Memory = MemorySettings.Fixed(256L << 20),
            Boot = new FirmwareBoot("seabios", 1),
            Disks = new ValueList<DiskDefinition>([new DiskDefinition("/d/a.raw"), new DiskDefinition("/d/boot.raw")]),
            NetworkAdapters = new ValueList<NetworkAdapterDefinition>([new NetworkAdapterDefinition("tap9", null, MacAddress.Parse("52:54:00:00:00:09"))]),
            DvdDrives = new ValueList<DvdDriveDefinition>([new DvdDriveDefinition("/i/x.iso"), DvdDriveDefinition.Empty]),
            BalloonEnabled = true,
            BootOrder = new ValueList<BootDevice>([BootDevice.Dvd, BootDevice.Disk]),
            BootOnce = BootDevice.Network,
            Display = new DisplaySettings("127.0.0.1:5901", "/etc/pw"),
        }.Validate();

        var config = VmmConfigBuilder.BuildConfiguration(definition, "/store/vms/cfg/control.sock", "/store/vms/cfg/serial.log");

        Assert.Equal("seabios", config.Firmware); // the VMM's alias for its built-in SeaBIOS, passed as is
        // Slots: disks (boot disk first), adapters, DVD drives, balloon, display.
        Assert.Equal(["block", "block", "net", "cdrom", "cdrom", "balloon", "display"], config.Devices!.Select(d => d.Type));
        Assert.Equal("/d/boot.raw", ((BlockDeviceSpec)config.Devices![0]).Path);
        Assert.Equal("/i/x.iso", ((CdromDeviceSpec)config.Devices[3]).Path);
        Assert.Null(((CdromDeviceSpec)config.Devices[4]).Path);
        Assert.Equal(["00:04.0", "00:05.0", "00:01.0", "00:02.0"], config.BootOrder!);
        Assert.Equal(["00:03.0", "00:04.0", "00:05.0", "00:01.0", "00:02.0"], config.BootOnce!);
        Assert.Equal(new VncSpec { UnixPath = "/store/vms/cfg/vnc.sock", Tcp = "127.0.0.1:5901", PasswordFile = "/etc/pw" }, config.Vnc);

        // The written file is what the contract validates and reads back.
        var bytes = VmmConfigBuilder.Build(definition, "/store/vms/cfg/control.sock", "/store/vms/cfg/serial.log");
        Assert.Equal(config.BootOrder, ContractJson.ReadConfiguration(bytes, "vmm.json").BootOrder);
    }

    [Fact]
    public void Without_boot_order_or_display_the_configuration_is_as_before()
    {
        var config = VmmConfigBuilder.BuildConfiguration(TestDefinitions.Minimal("old"), "/s/control.sock", "/s/serial.log");
        Assert.Null(config.BootOrder);
        Assert.Null(config.BootOnce);
        Assert.Null(config.Vnc);
        Assert.Empty(config.Devices!);
    }
}
