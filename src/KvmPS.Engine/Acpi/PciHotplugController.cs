using System.Buffers.Binary;
using System.Numerics;
using KvmPS.Devices;
using KvmPS.State;

namespace KvmPS.Acpi;

/// <summary>
/// The ACPI PCI hot-plug controller (docs/acpi.md): four 32-bit slot bitmaps (bit n = slot n of bus 0) that the
/// DSDT's slot methods (<see cref="PciHotplugAcpi"/>) use. The VMM marks a slot inserted or asks the guest to release
/// it; either raises GPE <see cref="PciHotplugAcpi.Gpe"/>, whose handler notifies the slot objects.
/// <code>
/// offset 0x0  PCIU  read, write 1 to clear   slots with an insert event pending (Notify Device Check)
/// offset 0x4  PCID  read, write 1 to clear   slots with an eject request pending (Notify Eject Request)
/// offset 0x8  PCEJ  write                     _EJ0: the guest released the device in each slot written 1; reads 0
/// offset 0xC  PCRM  read only                 the slots with slot objects: hot-pluggable ones and removable configured ones
/// </code>
/// Two kinds of slot have slot objects: the hot-plug slots (after the configured devices; a device can be added
/// there) and the configured slots whose device can be removed live (<see cref="Vm.ConfiguredDeviceSlots"/>; only
/// removed, never re-filled). Any width and offset is accepted; bits of other slots never set and an eject of such a
/// slot, or of an empty one, does nothing: the guest cannot reach a device that must stay. Its state is the snapshot
/// record <c>pci-hotplug</c>.
/// </summary>
public sealed class PciHotplugController : IBusDevice, IPersistent
{
    public const int Length = 16;
    public const int UpOffset = 0x0, DownOffset = 0x4, EjectOffset = 0x8, RemovableOffset = 0xC;

    private readonly object _lock = new();
    private readonly uint _hotplugSlots, _removableConfiguredSlots;
    private readonly IAcpiEvents _events;
    private readonly Func<int, bool> _occupied;
    private uint _up, _down, _removing;

    /// <summary>Called (outside the lock, on the vCPU thread that wrote PCEJ) for each hot-plug slot the guest ejected.</summary>
    public event Action<int>? Ejected;

    /// <param name="hotplugSlots">Bitmap of the slots that can be hot-plugged (bit n = slot n; never slot 0).</param>
    /// <param name="occupied">Whether a slot holds a device now (an eject of an empty slot is ignored).</param>
    public PciHotplugController(uint hotplugSlots, IAcpiEvents events, Func<int, bool> occupied) : this(hotplugSlots, 0, events, occupied) { }

    /// <param name="removableConfiguredSlots">Bitmap of the configured slots whose device can be removed live (disjoint from the hot-plug slots).</param>
    public PciHotplugController(uint hotplugSlots, uint removableConfiguredSlots, IAcpiEvents events, Func<int, bool> occupied)
    {
        if (((hotplugSlots | removableConfiguredSlots) & 1) != 0) throw new ArgumentOutOfRangeException(nameof(hotplugSlots), "slot 0 (the host bridge) cannot be hot-pluggable.");
        if ((hotplugSlots & removableConfiguredSlots) != 0) throw new ArgumentOutOfRangeException(nameof(removableConfiguredSlots), "a configured slot cannot also be a hot-plug slot.");
        _hotplugSlots = hotplugSlots;
        _removableConfiguredSlots = removableConfiguredSlots;
        _events = events;
        _occupied = occupied;
    }

    public string Name => "pci-hotplug";
    public uint HotplugSlots => _hotplugSlots;
    public bool IsHotplugSlot(int slot) => slot is > 0 and < 32 && (_hotplugSlots & (1u << slot)) != 0;
    /// <summary>The configured slots whose device can be removed live.</summary>
    public uint RemovableConfiguredSlots => _removableConfiguredSlots;
    /// <summary>Every slot with a slot object (<c>_EJ0</c>): the hot-plug slots and the removable configured ones.</summary>
    public uint SlotObjects => _hotplugSlots | _removableConfiguredSlots;
    /// <summary>Whether <paramref name="slot"/> has a slot object, so its device can be asked to leave.</summary>
    public bool HasSlotObject(int slot) => slot is > 0 and < 32 && (SlotObjects & (1u << slot)) != 0;

    /// <summary>Slots whose insert event the guest has not taken.</summary>
    public uint PendingInserts { get { lock (_lock) return _up; } }
    /// <summary>Slots the VMM asked the guest to release and the guest has not ejected yet.</summary>
    public uint PendingRemovals { get { lock (_lock) return _removing; } }

    /// <summary>A device was plugged into <paramref name="slot"/>: an insert event (Device Check), GPE raised.</summary>
    public void Insert(int slot)
    {
        CheckSlot(slot);
        lock (_lock)
        {
            _up |= 1u << slot;
            _down &= ~(1u << slot);
            _removing &= ~(1u << slot);
        }
        _events.RaiseGpe(PciHotplugAcpi.Gpe);
    }

    /// <summary>Asks the guest to release the device in <paramref name="slot"/> (Eject Request); it stays until the guest ejects it.</summary>
    public void RequestRemoval(int slot)
    {
        CheckSlotObject(slot);
        lock (_lock)
        {
            _down |= 1u << slot;
            _removing |= 1u << slot;
        }
        _events.RaiseGpe(PciHotplugAcpi.Gpe);
    }

    /// <summary>The VMM released the slot (after an eject): no event stays pending for it.</summary>
    public void Clear(int slot)
    {
        CheckSlotObject(slot);
        lock (_lock)
        {
            uint keep = ~(1u << slot);
            _up &= keep; _down &= keep; _removing &= keep;
        }
    }

    private void CheckSlot(int slot)
    {
        if (!IsHotplugSlot(slot)) throw new ArgumentOutOfRangeException(nameof(slot), $"PCI slot {slot} is not a hot-plug slot.");
    }

    private void CheckSlotObject(int slot)
    {
        if (!HasSlotObject(slot)) throw new ArgumentOutOfRangeException(nameof(slot), $"PCI slot {slot} has no slot object (neither a hot-plug slot nor a removable configured device).");
    }

    public void Read(ulong offset, Span<byte> data)
    {
        Span<byte> regs = stackalloc byte[Length];
        lock (_lock)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(regs[UpOffset..], _up);
            BinaryPrimitives.WriteUInt32LittleEndian(regs[DownOffset..], _down);
            BinaryPrimitives.WriteUInt32LittleEndian(regs[RemovableOffset..], SlotObjects);
        }
        for (int i = 0; i < data.Length; i++)
        {
            ulong at = offset + (ulong)i;
            data[i] = at < Length ? regs[(int)at] : (byte)0;
        }
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        uint eject = 0;
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++)
            {
                ulong at = offset + (ulong)i;
                if (at >= Length) break;
                uint bits = (uint)data[i] << (8 * (int)(at % 4));
                switch ((int)at / 4 * 4)
                {
                    case UpOffset: _up &= ~bits; break;
                    case DownOffset: _down &= ~bits; break;
                    case EjectOffset: eject |= bits & SlotObjects; break;
                }
            }
        }
        while (eject != 0)
        {
            int slot = BitOperations.TrailingZeroCount(eject);
            eject &= eject - 1;
            if (!_occupied(slot)) continue;
            Clear(slot);
            Ejected?.Invoke(slot);
        }
    }

    // ---- state ----
    public string StateName => "pci-hotplug";
    public ushort StateVersion => 1;

    /// <summary>
    /// Version 1: hot-plug slots, PCIU, PCID, removal requested (u32 bitmaps each). The events may name removable
    /// configured slots too (the same layout: a snapshot without such an event reads as before).
    /// </summary>
    public void SaveState(StateWriter writer)
    {
        lock (_lock)
        {
            writer.WriteUInt32(_hotplugSlots);
            writer.WriteUInt32(_up);
            writer.WriteUInt32(_down);
            writer.WriteUInt32(_removing);
        }
    }

    /// <summary>Puts the event bitmaps back; raises nothing (a pending GPE is in the PM block's record).</summary>
    public void RestoreState(StateReader reader, ushort version)
    {
        DeviceState.EnsureVersion(reader, version, StateVersion);
        uint slots = reader.ReadUInt32();
        if (slots != _hotplugSlots) throw reader.Fail($"the snapshot's hot-plug slots 0x{slots:x8} differ from the machine's 0x{_hotplugSlots:x8} (another device configuration)");
        uint up = reader.ReadUInt32(), down = reader.ReadUInt32(), removing = reader.ReadUInt32();
        if (((up | down | removing) & ~SlotObjects) != 0) throw reader.Fail("an event is pending for a slot that has no slot object (not hot-pluggable, not a removable configured device)");
        reader.EnsureEnd();
        lock (_lock) (_up, _down, _removing) = (up, down, removing);
    }
}
