using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Virtio.Net;
using KvmPS.Devices.Virtio.Rng;
using KvmPS.Devices.Virtio.Scsi;
using KvmPS.Vm;
using KvmPS.Vm.Boot;
using KvmPS.Vmm;

namespace KvmPS.Engine.Tests.Firmware;

/// <summary>fw_cfg "bootorder" from boot_order / boot_once, and the configuration checks on them.</summary>
public sealed class BootOrderTests
{
    private static MachineConfig Machine(IReadOnlyList<int>? order = null, IReadOnlyList<int>? once = null) => new()
    {
        FirmwarePath = FirmwareImage.SeaBiosAlias,
        Devices = [new BlockDeviceConfig { Path = "/x.img" }, new RngDeviceConfig(), new CdromDeviceConfig(), new NetDeviceConfig { Tap = "t0", Mac = [0x52, 0x54, 0, 1, 2, 3] }],
        BootOrder = order,
        BootOnce = once,
    };

    [Fact]
    public void WithoutABootOrderTheFirstDiskIsListed()
    {
        Assert.Equal("/pci@i0cf8/*@1\n", FirmwareLoader.BootOrder(Machine()));
    }

    [Fact]
    public void BootOrderListsSeaBiosPathsThenHalt()
    {
        // The cdrom's LUN as SeaBIOS's build_scsi_path names it, the NIC (its option ROM) and the disk by PCI path.
        Assert.Equal("/pci@i0cf8/*@3/*@0/*@0,0\n/pci@i0cf8/*@4\n/pci@i0cf8/*@1\nHALT\n", FirmwareLoader.BootOrder(Machine(order: [3, 4, 1])));
        // boot_once wins while it is set (the host clears it for a reboot).
        Assert.Equal("/pci@i0cf8/*@1\nHALT\n", FirmwareLoader.BootOrder(Machine(order: [3], once: [1])));
        Assert.Equal("/pci@i0cf8/*@3/*@0/*@0,0\nHALT\n", FirmwareLoader.BootOrder(Machine(order: [3], once: [1]) with { BootOnce = null }));
    }

    [Fact]
    public void ARebootGoesBackToTheBootOrder()
    {
        var first = VmmHost.ForBoot(Machine(order: [3], once: [1]), boots: 0);
        Assert.Equal("/pci@i0cf8/*@1\nHALT\n", FirmwareLoader.BootOrder(first));
        var reboot = VmmHost.ForBoot(Machine(order: [3], once: [1]), boots: 1);
        Assert.Null(reboot.BootOnce);
        Assert.Equal("/pci@i0cf8/*@3/*@0/*@0,0\nHALT\n", FirmwareLoader.BootOrder(reboot));
        // boot_once without boot_order: a reboot boots the first disk, as without either.
        Assert.Equal("/pci@i0cf8/*@1\n", FirmwareLoader.BootOrder(VmmHost.ForBoot(Machine(once: [3]), boots: 2)));
    }

    [Fact]
    public void FlagsAndTheCanonicalConfigurationCarryTheOrder()
    {
        string iso = Path.GetTempFileName();
        try
        {
            var c = VmmConfig.FromArgs(["--firmware", "seabios", "--device", "block,path=/x.img", "--device", $"cdrom,path={iso}",
                "--boot-order", "00:02.0,00:01.0", "--boot-once", "00:01.0"]);
            Assert.Equal([2, 1], c.Machine.BootOrder!);
            Assert.Equal([1], c.Machine.BootOnce!);
            Assert.Equal(["00:02.0", "00:01.0"], c.Configuration.BootOrder!);
            Assert.Equal(["00:01.0"], c.Configuration.BootOnce!);
            Assert.Null(VmmConfig.FromArgs(["--firmware", "seabios", "--device", "block,path=/x.img"]).Machine.BootOrder);
        }
        finally { File.Delete(iso); }
    }

    [Theory]
    [InlineData("00:05.0", "--boot-order: 00:05.0 holds no configured device")]
    [InlineData("00:02.0", "--boot-order: 00:02.0 is a rng device")]
    [InlineData("0:1", "--boot-order: address '0:1' is not a PCI address")]
    [InlineData("00:01.0,00:01.0", "--boot-order: 00:01.0 is listed twice")]
    public void BadAddressesNameTheFieldAndAddress(string order, string message)
    {
        var e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--firmware", "seabios", "--device", "block,path=/x.img", "--device", "rng", "--boot-order", order]));
        Assert.StartsWith(message, e.Message);
    }

    [Fact]
    public void RemovedDevicesAndKernelBootsAreRefused()
    {
        var e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromJson("""
            {"firmware": "seabios", "devices": [{"type": "block", "path": "/x.img"}, {"type": "block", "path": "/y.img"}],
             "removed_devices": ["00:02.0"], "boot_once": ["00:02.0"]}
            """, "vm.json"));
        Assert.Equal("vm.json: field 'boot_once': 00:02.0 is a removed device (removed_devices).", e.Message);
        e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--device", "block,path=/x.img", "--boot-order", "00:01.0"]));
        Assert.Contains("needs firmware boot", e.Message);
    }
}
