using KvmPS.Devices.Virtio.Block;
using KvmPS.Engine.Tests.Support;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.State;

/// <summary>
/// Record <c>pci-removed-configured</c> in-process on the real KVM (machines built, never run): a machine that lost a
/// configured disk restores into one built with it (the disk unplugged, its record not expected), a snapshot from
/// before the record restores as before, and a record naming a device that must stay, or not naming a slot the machine
/// lacks, is refused naming the record.
/// </summary>
public sealed class RemovedConfiguredDevicesStateTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly MachineConfig _config;

    public RemovedConfiguredDevicesStateTests()
    {
        foreach (var name in new[] { "d0.raw", "d1.raw" })
            using (var f = File.Create(_dir.File(name))) f.SetLength(1 << 20);
        _config = new MachineConfig { Devices = [new BlockDeviceConfig { Path = _dir.File("d0.raw") }, new BlockDeviceConfig { Path = _dir.File("d1.raw") }] };
    }

    public void Dispose() => _dir.Dispose();

    private List<StateRecord> Records(MachineConfig config)
    {
        using var machine = new MachineBuilder(config, _ => { }).BuildHardware();
        return machine.SaveState();
    }

    [Fact]
    public void AMachineThatLostTheSecondDiskRestoresIntoOneBuiltWithItWhichUnplugsIt()
    {
        var records = Records(_config with { RemovedDeviceSlots = 1u << 2 });
        Assert.Equal([1u << 2, 0, 0, 0], records.Single(r => r.Name == "pci-removed-configured").Data.Select(b => (uint)b));
        Assert.DoesNotContain(records, r => r.Name == "pci/00:02.0");

        using var copy = new MachineBuilder(_config, _ => { }).BuildHardware();
        Assert.Equal(2, copy.ConfiguredDevices.Count);
        copy.RestoreState(records);
        Assert.Equal(1u << 2, copy.RemovedConfiguredSlots);
        Assert.Equal([1], copy.ConfiguredDevices.Select(d => d.Slot));
        Assert.Null(copy.Pci[2]);
    }

    [Fact]
    public void ASnapshotFromBeforeTheRecordRestoresAsBefore()
    {
        var old = Records(_config).Where(r => r.Name != "pci-removed-configured").ToList();
        using var copy = new MachineBuilder(_config, _ => { }).BuildHardware();
        copy.RestoreState(old);
        Assert.Equal(0u, copy.RemovedConfiguredSlots);
        Assert.Equal([1, 2], copy.ConfiguredDevices.Select(d => d.Slot));
    }

    [Fact]
    public void ARecordThatDoesNotFitTheMachineIsRefusedNamingIt()
    {
        var records = Records(_config);
        // The first disk must stay: a record naming it comes from another configuration.
        var firstDisk = records.Select(r => r.Name == "pci-removed-configured" ? r with { Data = BitConverter.GetBytes(1u << 1) } : r).ToList();
        using (var copy = new MachineBuilder(_config, _ => { }).BuildHardware())
        {
            var e = Assert.Throws<StateFormatException>(() => copy.RestoreState(firstDisk));
            Assert.Equal("pci-removed-configured", e.RecordName);
            Assert.Contains("00:01.0", e.Message);
        }
        // A machine built without the second disk (removed_devices) cannot take a snapshot that still has it.
        using (var lacking = new MachineBuilder(_config with { RemovedDeviceSlots = 1u << 2 }, _ => { }).BuildHardware())
        {
            var e = Assert.Throws<StateFormatException>(() => lacking.RestoreState(records));
            Assert.Equal("pci-removed-configured", e.RecordName);
            Assert.Contains("00:02.0", e.Message);
        }
    }
}
