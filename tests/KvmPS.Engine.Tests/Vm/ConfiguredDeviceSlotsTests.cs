using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio.Balloon;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Virtio.Net;
using KvmPS.Devices.Virtio.Rng;
using KvmPS.Migration;
using KvmPS.Vm;
using KvmPS.Vmm;

namespace KvmPS.Engine.Tests.Vm;

/// <summary>
/// Which configured devices can leave a running VM (Vm/ConfiguredDeviceSlots), the config's <c>removed_devices</c>,
/// and the migration identity of a VM that lost one.
/// </summary>
public sealed class ConfiguredDeviceSlotsTests
{
    private static BlockDeviceConfig Disk(string path) => new() { Path = path };
    private static NetDeviceConfig Nic() => new() { Tap = "kvt0", Mac = [0x52, 0x54, 0, 1, 2, 3] };

    // Slots: 1 net, 2 first disk, 3 rng, 4 second disk, 5 balloon.
    private static readonly DeviceConfig[] Devices = [Nic(), Disk("/d0.raw"), new RngDeviceConfig(), Disk("/d1.raw"), new BalloonDeviceConfig()];

    [Fact]
    public void NetDevicesAndDisksButTheFirstAreRemovableTheRestStays()
    {
        Assert.Equal(1u << 1 | 1u << 4, ConfiguredDeviceSlots.Removable(Devices));
        Assert.Contains("first disk", ConfiguredDeviceSlots.WhyNotRemovable(Devices, 2));
        Assert.Contains("a rng device is part of the machine", ConfiguredDeviceSlots.WhyNotRemovable(Devices, 3));
        Assert.Contains("balloon", ConfiguredDeviceSlots.WhyNotRemovable(Devices, 5));
        Assert.Contains("no configured device", ConfiguredDeviceSlots.WhyNotRemovable(Devices, 6));
        Assert.Equal(0u, ConfiguredDeviceSlots.Removable([]));
    }

    [Fact]
    public void AMachineConfigCanOnlyLackRemovableDevices()
    {
        new MachineConfig { Devices = Devices, RemovedDeviceSlots = 1u << 4 }.Validate();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new MachineConfig { Devices = Devices, RemovedDeviceSlots = 1u << 2 }.Validate());
        Assert.Contains("00:02.0", e.Message);
        Assert.Contains("first disk", e.Message);
    }

    [Fact]
    public void RemovedDevicesInTheConfigFileLeaveTheirSlotsAndRoundTrip()
    {
        const string devices = """[ { "type": "block", "path": "/d0.raw" }, { "type": "block", "path": "/d1.raw" }, { "type": "rng" } ]""";
        var config = VmmConfig.FromJson($$"""{ "devices": {{devices}}, "removed_devices": [ "00:02.0" ] }""", "dst.json");
        Assert.Equal(1u << 2, config.Machine.RemovedDeviceSlots);
        Assert.Equal(["00:02.0"], config.Configuration.RemovedDevices);
        Assert.Null(VmmConfig.FromJson($$"""{ "devices": {{devices}} }""", "a.json").Configuration.RemovedDevices);

        string message(string removed) => Assert.Throws<VmmConfigException>(() => VmmConfig.FromJson($$"""{ "devices": {{devices}}, "removed_devices": {{removed}} }""", "dst.json")).Message;
        Assert.Contains("dst.json: field 'removed_devices'", message("""["00:01.0"]"""));
        Assert.Contains("first disk", message("""["00:01.0"]"""));
        Assert.Contains("a rng device", message("""["00:03.0"]"""));
        Assert.Contains("no configured device", message("""["00:07.0"]"""));
        Assert.Contains("'slot2'", message("""["slot2"]"""));
    }

    [Fact]
    public void TheIdentityOfAVmThatLostADeviceMatchesAConfigNamingItRemovedNotOneThatShiftsTheSlots()
    {
        var source = new MachineConfig { Devices = Devices };
        var lost = MachineIdentity.For(source, removedSlots: 1u << 4);
        Assert.DoesNotContain("device 00:04.0 block", lost);
        Assert.Contains("device 00:05.0 balloon", lost);
        // The destination's config: the same devices with the lost one named in removed_devices.
        Assert.Null(MachineIdentity.Compare(lost, MachineIdentity.For(source with { RemovedDeviceSlots = 1u << 4 })));
        // The same devices all present, or the list without the disk (the balloon moves to 00:04.0): refused, naming what differs.
        Assert.Contains("device 00:04.0 block", MachineIdentity.Compare(lost, MachineIdentity.For(source)));
        var shifted = source with { Devices = [.. Devices.Where((_, i) => i != 3)] };
        Assert.Contains("device 00:04.0 balloon", MachineIdentity.Compare(lost, MachineIdentity.For(shifted)));
    }
}
