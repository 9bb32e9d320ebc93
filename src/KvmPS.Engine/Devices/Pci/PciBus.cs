using System.Buffers.Binary;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Devices.Pci;

/// <summary>Address windows of the PCI host bridge (guest-physical).</summary>
public sealed record PciWindows(ulong Mmio32Base, ulong Mmio32Size, ulong Mmio64Base, ulong Mmio64Size, ulong EcamBase, ulong EcamSize)
{
    public ulong Mmio32End => Mmio32Base + Mmio32Size;
    public ulong Mmio64End => Mmio64Base + Mmio64Size;
    /// <summary>Last bus number the ECAM window covers (1 MiB per bus).</summary>
    public byte EcamLastBus => (byte)Math.Min(255, EcamSize / PciBus.EcamBytesPerBus - 1);
}

/// <summary>
/// PCI bus 0 behind a host bridge at 00:00.0: 32 slots of single-function devices, configuration access through
/// mechanism #1 (ports 0xCF8/0xCFC) and ECAM, BAR pre-assignment from a 32-bit and a 64-bit MMIO window, and INTx
/// routing by the usual swizzle onto IOAPIC GSIs 16–23 (see <see cref="IntxGsi"/>; the DSDT _PRT says the same).
/// Devices can be added and removed while the VM runs (the slot model hot-plug will use).
/// </summary>
public sealed class PciBus : IDisposable
{
    public const int SlotCount = 32;
    public const ulong EcamBytesPerBus = 1UL << 20;
    public const uint IntxGsiBase = 16;
    public const ushort ConfigAddressPort = 0xCF8;
    public const int ConfigPortCount = 8;

    private readonly PciDevice?[] _slots = new PciDevice?[SlotCount];
    private readonly object _lock = new();
    private readonly Func<uint, IInterruptLine>? _intxFactory;
    private ulong _next32, _next64;
    // BAR ranges handed out, per device, and ranges given back by unplugged devices (reused by size: a hot-plugged
    // device added and removed again and again must not run the windows dry).
    private readonly Dictionary<PciDevice, List<(ulong Address, ulong Size)>> _allocated = new();
    private readonly List<(ulong Address, ulong Size)> _freed = new();

    public MmioBus Mmio { get; }
    public PciWindows Windows { get; }
    public Action<string> Log { get; }
    public PciHostBridge HostBridge { get; }
    /// <summary>Port-I/O device for 0xCF8–0xCFF (register with <see cref="ConfigAddressPort"/>, <see cref="ConfigPortCount"/>).</summary>
    public IBusDevice ConfigPorts { get; }
    /// <summary>MMIO device for the ECAM window (register at <see cref="PciWindows.EcamBase"/>, <see cref="PciWindows.EcamSize"/>).</summary>
    public IBusDevice Ecam { get; }

    public PciBus(MmioBus mmio, PciWindows windows, Func<uint, IInterruptLine>? intxFactory = null, Action<string>? log = null)
    {
        Mmio = mmio;
        Windows = windows;
        Log = log ?? (_ => { });
        _intxFactory = intxFactory;
        _next32 = windows.Mmio32Base;
        _next64 = windows.Mmio64Base;
        ConfigPorts = new ConfigIo(this);
        Ecam = new EcamWindow(this);
        HostBridge = new PciHostBridge();
        _slots[0] = HostBridge;
        HostBridge.AttachTo(this, 0, null);
    }

    /// <summary>IOAPIC GSI of INTx pin <paramref name="pin"/> (1 = INTA … 4 = INTD) of a device in <paramref name="slot"/>.</summary>
    public static uint IntxGsi(int slot, int pin) => IntxGsiBase + (uint)((slot + pin - 1) & 3);

    public PciDevice? this[int slot] => (uint)slot < SlotCount ? Volatile.Read(ref _slots[slot]) : null;

    public IEnumerable<(int Slot, PciDevice Device)> Devices
    {
        get { for (int s = 0; s < SlotCount; s++) if (this[s] is { } d) yield return (s, d); }
    }

    /// <summary>
    /// Every persistent part of the bus in restore order: slot by slot, each function's own records
    /// (<see cref="PciDevice.PersistentParts"/>: "pci/00:SS.0", and for virtio "…/virtio", "…/queueN", "…/device").
    /// </summary>
    public IReadOnlyList<IPersistent> PersistentParts() => Devices.SelectMany(d => d.Device.PersistentParts()).ToArray();

    /// <summary>Every part of the bus with activity of its own, in pause order (resume in reverse).</summary>
    public IReadOnlyList<IPausable> PausableParts() => Devices.SelectMany(d => d.Device.PausableParts()).ToArray();

    /// <summary>Plugs <paramref name="device"/> into the first free slot; returns the slot.</summary>
    public int AddDevice(PciDevice device)
    {
        lock (_lock)
        {
            for (int s = 1; s < SlotCount; s++)
                if (_slots[s] is null) { AddDevice(s, device); return s; }
        }
        throw new InvalidOperationException("every PCI slot is in use.");
    }

    /// <summary>Plugs <paramref name="device"/> into <paramref name="slot"/> (1–31): assigns its BARs and INTx route, enables memory decode.</summary>
    public void AddDevice(int slot, PciDevice device)
    {
        if (slot < 1 || slot >= SlotCount) throw new ArgumentOutOfRangeException(nameof(slot), $"PCI slot {slot} is out of range (1-31).");
        lock (_lock)
        {
            if (_slots[slot] is { } other) throw new InvalidOperationException($"PCI slot {slot} is already used by {other.Name}.");
            if (device.Bus is not null) throw new InvalidOperationException($"{device.Name} is already on a bus.");
            IInterruptLine? intx = null;
            if (device.InterruptPin is >= 1 and <= 4)
            {
                uint gsi = IntxGsi(slot, device.InterruptPin);
                intx = _intxFactory?.Invoke(gsi);
                device.ConfigWrite(0x3C, [(byte)gsi]); // interrupt line, as firmware would fill it in
            }
            device.AttachTo(this, slot, intx);
            var ranges = new List<(ulong, ulong)>();
            try
            {
                foreach (var bar in device.Bars)
                {
                    ulong at = Allocate(bar);
                    ranges.Add((at, bar.Size));
                    device.AssignBar(bar, at);
                }
            }
            catch
            {
                // No room: the device leaves the bus as it came, the ranges it got go back.
                device.DetachFromBus();
                _freed.AddRange(ranges);
                throw;
            }
            _allocated[device] = ranges;
            device.EnableDecode(PciDevice.CommandMemory);
            Volatile.Write(ref _slots[slot], device);
        }
    }

    /// <summary>Unplugs the device in <paramref name="slot"/> (its BARs stop decoding) and disposes it; its BAR ranges can be handed out again.</summary>
    public void RemoveDevice(int slot)
    {
        PciDevice? device;
        lock (_lock)
        {
            if (slot < 1 || slot >= SlotCount || _slots[slot] is null) throw new ArgumentOutOfRangeException(nameof(slot), $"PCI slot {slot} is empty.");
            device = _slots[slot];
            Volatile.Write(ref _slots[slot], null);
            if (_allocated.Remove(device!, out var ranges)) _freed.AddRange(ranges);
        }
        device!.DetachFromBus();
        device.Dispose();
    }

    private ulong Allocate(PciBar bar)
    {
        ulong align = Math.Max(bar.Size, 0x1000UL);
        // A range an unplugged device gave back, of the same size (so aligned) and in the window this BAR would use.
        for (int i = 0; i < _freed.Count; i++)
        {
            var (address, size) = _freed[i];
            bool high = address >= Windows.Mmio64Base && address < Windows.Mmio64End;
            if (size == bar.Size && high == (bar.Is64Bit && Windows.Mmio64Size > 0) && address % align == 0)
            {
                _freed.RemoveAt(i);
                return address;
            }
        }
        // 64-bit BARs go high when there is a 64-bit window; 32-bit BARs (and fallbacks) go below 4 GiB.
        if (bar.Is64Bit && Windows.Mmio64Size > 0)
        {
            ulong at = (_next64 + align - 1) & ~(align - 1);
            if (at + bar.Size <= Windows.Mmio64End) { _next64 = at + bar.Size; return at; }
        }
        ulong low = (_next32 + align - 1) & ~(align - 1);
        if (low + bar.Size > Windows.Mmio32End)
            throw new InvalidOperationException($"the 32-bit PCI MMIO window has no room for a 0x{bar.Size:x}-byte BAR.");
        _next32 = low + bar.Size;
        return low;
    }

    /// <summary>Configuration read; an absent function reads as all-ones.</summary>
    public void ConfigRead(int bus, int device, int function, int register, Span<byte> data)
    {
        if (bus != 0 || function != 0 || this[device] is not { } d) { data.Fill(0xFF); return; }
        d.ConfigRead(register, data);
    }

    public void ConfigWrite(int bus, int device, int function, int register, ReadOnlySpan<byte> data)
    {
        if (bus != 0 || function != 0 || this[device] is not { } d) return;
        d.ConfigWrite(register, data);
    }

    public void Dispose()
    {
        for (int s = 1; s < SlotCount; s++)
            if (this[s] is not null)
            {
                try { RemoveDevice(s); } catch (Exception e) { Log($"PCI slot {s}: {e.Message}"); }
            }
    }

    /// <summary>Configuration mechanism #1: a dword address register at 0xCF8, a data window at 0xCFC–0xCFF.</summary>
    private sealed class ConfigIo(PciBus bus) : IBusDevice
    {
        private uint _address;
        public string Name => "pci-config-io";

        public void Read(ulong offset, Span<byte> data)
        {
            if (offset < 4)
            {
                Span<byte> a = stackalloc byte[4];
                BinaryPrimitives.WriteUInt32LittleEndian(a, Volatile.Read(ref _address));
                for (int i = 0; i < data.Length; i++) data[i] = offset + (ulong)i < 4 ? a[(int)offset + i] : (byte)0xFF;
                return;
            }
            uint addr = Volatile.Read(ref _address);
            if ((addr & 0x8000_0000) == 0 || offset + (ulong)data.Length > 8) { data.Fill(0xFF); return; }
            bus.ConfigRead((int)(addr >> 16) & 0xFF, (int)(addr >> 11) & 0x1F, (int)(addr >> 8) & 7, (int)(addr & 0xFC) + (int)(offset - 4), data);
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (offset < 4)
            {
                // Only a full dword write at 0xCF8 latches an address (byte writes there are mechanism #2 probes).
                if (offset == 0 && data.Length == 4) Volatile.Write(ref _address, BinaryPrimitives.ReadUInt32LittleEndian(data) & 0x80FF_FFFC);
                return;
            }
            uint addr = Volatile.Read(ref _address);
            if ((addr & 0x8000_0000) == 0 || offset + (ulong)data.Length > 8) return;
            bus.ConfigWrite((int)(addr >> 16) & 0xFF, (int)(addr >> 11) & 0x1F, (int)(addr >> 8) & 7, (int)(addr & 0xFC) + (int)(offset - 4), data);
        }
    }

    /// <summary>PCI Express enhanced configuration access: bus &lt;&lt; 20 | device &lt;&lt; 15 | function &lt;&lt; 12 | register.</summary>
    private sealed class EcamWindow(PciBus bus) : IBusDevice
    {
        public string Name => "pci-ecam";

        public void Read(ulong offset, Span<byte> data)
        {
            int reg = (int)(offset & 0xFFF);
            if (reg + data.Length > 0x1000) { data.Fill(0xFF); return; }
            bus.ConfigRead((int)(offset >> 20), (int)(offset >> 15) & 0x1F, (int)(offset >> 12) & 7, reg, data);
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            int reg = (int)(offset & 0xFFF);
            if (reg + data.Length > 0x1000) return;
            bus.ConfigWrite((int)(offset >> 20), (int)(offset >> 15) & 0x1F, (int)(offset >> 12) & 7, reg, data);
        }
    }
}

/// <summary>The host bridge at 00:00.0 (Intel Q35 MCH ids, class 06 00 00). No BARs.</summary>
public sealed class PciHostBridge : PciDevice
{
    public const ushort Vendor = 0x8086, Device = 0x29C0;
    public PciHostBridge() : base(Vendor, Device, 0x060000, 0, 0x1AF4, 0x1100, interruptPin: 0) { }
    public override string Name => "pci-host-bridge";
}
