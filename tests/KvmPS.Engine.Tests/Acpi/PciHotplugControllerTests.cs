using KvmPS.Acpi;
using KvmPS.State;
using static KvmPS.Acpi.PciHotplugController;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>The PCI hot-plug controller's slot bitmaps as the DSDT's PSCN and _EJ0 use them, and what a guest writing garbage gets.</summary>
public sealed class PciHotplugControllerTests
{
    private sealed class Events : IAcpiEvents
    {
        public readonly List<int> Raised = new();
        public void RaiseGpe(int gpe) => Raised.Add(gpe);
    }

    // Slots 3-31 hot-pluggable (two configured devices), slots 5 and 9 hold a device.
    private readonly HashSet<int> _occupied = [5, 9];
    private readonly Events _events = new();
    private readonly List<int> _ejected = new();
    private readonly PciHotplugController _c;

    public PciHotplugControllerTests()
    {
        _c = new PciHotplugController(PciHotplugAcpi.HotplugSlotsAfter(2), _events, _occupied.Contains);
        _c.Ejected += _ejected.Add;
    }

    private uint Read32(int offset) { Span<byte> b = stackalloc byte[4]; _c.Read((ulong)offset, b); return BitConverter.ToUInt32(b); }
    private void Write32(int offset, uint value) => _c.Write((ulong)offset, BitConverter.GetBytes(value));

    [Fact]
    public void TheRemovableRegisterListsTheSlotsAfterTheConfiguredDevices()
    {
        Assert.Equal(0xFFFF_FFF8u, Read32(RemovableOffset));
        Assert.Equal(0xFFFF_FFFEu, PciHotplugAcpi.HotplugSlotsAfter(0));
        Assert.Equal(0u, PciHotplugAcpi.HotplugSlotsAfter(31));
        Assert.Equal(0u, Read32(UpOffset));
        Assert.Equal(0u, Read32(DownOffset));
        Assert.Equal(0u, Read32(EjectOffset));
    }

    [Fact]
    public void InsertAndRemovalRaiseGpe1AndAreClearedByWritingOnes()
    {
        _c.Insert(5);
        Assert.Equal([PciHotplugAcpi.Gpe], _events.Raised);
        Assert.Equal(1u << 5, Read32(UpOffset));
        _c.RequestRemoval(9);
        Assert.Equal(1u << 9, Read32(DownOffset));
        Assert.Equal(1u << 9, _c.PendingRemovals);
        // PSCN acknowledges what it read: write one to clear, other bits stay.
        Write32(UpOffset, 1u << 5 | 1u << 9);
        Assert.Equal(0u, Read32(UpOffset));
        Write32(DownOffset, 1u << 9);
        Assert.Equal(0u, Read32(DownOffset));
        // The acknowledged request stays pending in the VMM until the guest ejects.
        Assert.Equal(1u << 9, _c.PendingRemovals);
        Write32(EjectOffset, 1u << 9);
        Assert.Equal([9], _ejected);
        Assert.Equal(0u, _c.PendingRemovals);
    }

    [Fact]
    public void AnEjectOfAColdPluggedEmptyOrHostBridgeSlotDoesNothing()
    {
        _occupied.Add(1); // a configured device: not hot-pluggable
        Write32(EjectOffset, 1u << 0 | 1u << 1 | 1u << 2 | 1u << 7); // host bridge, configured, configured, empty
        Assert.Empty(_ejected);
        Assert.Throws<ArgumentOutOfRangeException>(() => _c.Insert(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => _c.RequestRemoval(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => _c.RequestRemoval(32));
    }

    [Fact]
    public void GarbageOfAnyWidthAndOffsetNeverThrowsAndOnlyEjectsHotPluggedSlots()
    {
        var random = new Random(13);
        var buffer = new byte[8];
        for (int i = 0; i < 20_000; i++)
        {
            int offset = random.Next(0, 40);
            int length = random.Next(1, 9);
            random.NextBytes(buffer);
            if (random.Next(2) == 0) _c.Write((ulong)offset, buffer.AsSpan(0, length));
            else _c.Read((ulong)offset, buffer.AsSpan(0, length));
            if (i % 1000 == 0) { _c.Insert(5); _c.RequestRemoval(9); }
        }
        Assert.NotEmpty(_ejected);
        Assert.All(_ejected, slot => Assert.Contains(slot, new[] { 5, 9 }));
        Assert.Equal(0xFFFF_FFF8u, Read32(RemovableOffset)); // read-only
        Span<byte> beyond = stackalloc byte[4];
        _c.Read(Length, beyond);
        Assert.Equal(0u, BitConverter.ToUInt32(beyond));
    }

    [Fact]
    public void TheStateRecordRoundTripsAndRefusesAnotherSlotLayout()
    {
        _c.Insert(5);
        _c.RequestRemoval(9);
        var w = new StateWriter();
        _c.SaveState(w);
        var copy = new PciHotplugController(PciHotplugAcpi.HotplugSlotsAfter(2), new Events(), _ => true);
        copy.RestoreState(new StateReader(w.ToArray(), "pci-hotplug"), 1);
        Assert.Equal(1u << 5, copy.PendingInserts);
        Assert.Equal(1u << 9, copy.PendingRemovals);
        var other = new PciHotplugController(PciHotplugAcpi.HotplugSlotsAfter(3), new Events(), _ => true);
        var e = Assert.Throws<StateFormatException>(() => other.RestoreState(new StateReader(w.ToArray(), "pci-hotplug"), 1));
        Assert.Contains("hot-plug slots", e.Message);
        Assert.Throws<StateFormatException>(() => copy.RestoreState(new StateReader(w.ToArray(), "pci-hotplug"), 2));
    }

    [Fact]
    public void ARemovableConfiguredSlotCanBeAskedToLeaveAndEjectedButNeverInserted()
    {
        // Slot 1 a configured device that stays, slot 2 a removable configured one; 3-31 hot-plug.
        var occupied = new HashSet<int> { 1, 2 };
        var events = new Events();
        var ejected = new List<int>();
        var c = new PciHotplugController(PciHotplugAcpi.HotplugSlotsAfter(2), 1u << 2, events, occupied.Contains);
        c.Ejected += ejected.Add;
        Span<byte> b = stackalloc byte[4];
        c.Read(RemovableOffset, b);
        Assert.Equal(0xFFFF_FFFCu, BitConverter.ToUInt32(b)); // the slot objects: the removable configured slot and the hot-plug ones
        Assert.True(c.HasSlotObject(2));
        Assert.False(c.IsHotplugSlot(2));
        Assert.False(c.HasSlotObject(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.Insert(2)); // a device is never added into a configured slot
        Assert.Throws<ArgumentOutOfRangeException>(() => c.RequestRemoval(1));

        c.RequestRemoval(2);
        Assert.Equal([PciHotplugAcpi.Gpe], events.Raised);
        Assert.Equal(1u << 2, c.PendingRemovals);
        c.Write(EjectOffset, BitConverter.GetBytes(1u << 1 | 1u << 2)); // the slot that stays is ignored
        Assert.Equal([2], ejected);
        Assert.Equal(0u, c.PendingRemovals);

        // A pending removal of a configured slot is part of the record; a machine without that slot object refuses it.
        c.RequestRemoval(2);
        var w = new StateWriter();
        c.SaveState(w);
        var copy = new PciHotplugController(PciHotplugAcpi.HotplugSlotsAfter(2), 1u << 2, new Events(), _ => true);
        copy.RestoreState(new StateReader(w.ToArray(), "pci-hotplug"), 1);
        Assert.Equal(1u << 2, copy.PendingRemovals);
        var without = new PciHotplugController(PciHotplugAcpi.HotplugSlotsAfter(2), new Events(), _ => true);
        Assert.Contains("no slot object", Assert.Throws<StateFormatException>(() => without.RestoreState(new StateReader(w.ToArray(), "pci-hotplug"), 1)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PciHotplugController(PciHotplugAcpi.HotplugSlotsAfter(2), 1u << 3, new Events(), _ => true));
    }
}
