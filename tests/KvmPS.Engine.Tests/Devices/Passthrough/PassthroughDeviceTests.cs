using System.Buffers.Binary;
using KvmPS.Devices.Passthrough;
using KvmPS.Devices.Pci;
using KvmPS.Interop;
using KvmPS.Vm;
using Xunit;

namespace KvmPS.Engine.Tests.Devices.Passthrough;

/// <summary>
/// An in-memory VFIO device: 4 KiB config space with MSI (1 vector, 64-bit), MSI-X (4 vectors, table and PBA in BAR0)
/// and a vendor capability, extended space; BAR0 4 KiB of registers (trapped), BAR2 64-bit prefetchable 16 KiB
/// mmap-able (a memfd), a ROM. Records what the device model sends it; <see cref="Fail"/> makes every call throw.
/// </summary>
internal sealed class FakeTransport : IPassthroughTransport
{
    public readonly byte[] Config = new byte[4096];
    public readonly byte[] Bar0 = new byte[4096];
    public readonly MemfdHandle Bar2 = MemfdHandle.Create("bar2", 0x4000, hugetlb: false);
    public readonly List<(int Region, ulong Offset, byte[] Data)> Writes = [];
    public readonly List<(int Index, int Count)> IrqSets = [];
    public IReadOnlyList<EventFdHandle> LastIrqFds = [];
    public byte[]? Rom;
    public int Resets;
    public string Name => "fake device";
    public string? Failed { get; private set; }

    public FakeTransport()
    {
        Set16(0x00, 0x4B56); Set16(0x02, 0x1234); Config[0x08] = 2; Config[0x0B] = 0xFF;
        Set16(0x06, PciDevice.StatusCapList); Config[0x34] = 0x40;
        Set32(0x10, 0); Set32(0x18, 0xC); // BAR0 32-bit; BAR2 64-bit prefetchable
        Config[0x40] = 0x05; Config[0x41] = 0x50; Set16(0x42, 0x0080);            // MSI, 64-bit
        Config[0x50] = 0x11; Config[0x51] = 0x60; Set16(0x52, 3);                  // MSI-X, 4 vectors
        Set32(0x54, 0x800); Set32(0x58, 0x900);                                    // table BAR0+0x800, PBA BAR0+0x900
        Config[0x60] = 0x09; Config[0x61] = 0x00; Config[0x62] = 4;                // vendor-specific
        Set32(0x100, 0x0001_000B);                                                 // an extended capability header
    }

    private void Set16(int o, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(Config.AsSpan(o), v);
    private void Set32(int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Config.AsSpan(o), v);

    public void Fail() => Failed = "the server went away";
    private void Check() { if (Failed is not null) throw new PassthroughException(Name, Failed); }

    public PassthroughDeviceInfo GetDeviceInfo() { Check(); return new(Vfio.VFIO_DEVICE_FLAGS_PCI | Vfio.VFIO_DEVICE_FLAGS_RESET, 9, 5); }

    public PassthroughRegion GetRegionInfo(int index)
    {
        Check();
        const uint rw = Vfio.VFIO_REGION_INFO_FLAG_READ | Vfio.VFIO_REGION_INFO_FLAG_WRITE;
        return index switch
        {
            0 => new(0, rw, 0x1000, 0, [], null),
            2 => new(2, rw | Vfio.VFIO_REGION_INFO_FLAG_MMAP, 0x4000, 0, [new MmapArea(0, 0x4000)], Bar2),
            6 when Rom is not null => new(6, Vfio.VFIO_REGION_INFO_FLAG_READ, (ulong)Rom.Length, 0, [], null),
            7 => new(7, rw, 4096, 0, [], null),
            _ => new(index, 0, 0, 0, [], null),
        };
    }

    /// <summary>Per IRQ index the count <see cref="GetIrqInfo"/> reports (INTx 1, MSI 4, MSI-X 4); a missing index reports none.</summary>
    public readonly Dictionary<int, int> IrqCounts = new() { [0] = 1, [1] = 4, [2] = 4 };
    public PassthroughIrqInfo GetIrqInfo(int index) { Check(); return new(index, Vfio.VFIO_IRQ_INFO_EVENTFD, IrqCounts.GetValueOrDefault(index)); }

    public void RegionRead(int region, ulong offset, Span<byte> data)
    {
        Check();
        var source = region switch { 0 => Bar0, 6 => Rom!, 7 => Config, _ => throw new PassthroughException(Name, $"no region {region}") };
        source.AsSpan((int)offset, data.Length).CopyTo(data);
    }

    public void RegionWrite(int region, ulong offset, ReadOnlySpan<byte> data)
    {
        Check();
        Writes.Add((region, offset, data.ToArray()));
        if (region == 0) data.CopyTo(Bar0.AsSpan((int)offset));
    }

    public void SetIrqEventFds(int irqIndex, IReadOnlyList<EventFdHandle> fds) { Check(); IrqSets.Add((irqIndex, fds.Count)); if (irqIndex == Vfio.VFIO_PCI_INTX_IRQ_INDEX) IntxTrigger = fds.Count > 0 ? fds[0] : null; else LastIrqFds = fds; }
    public void SetIrqUnmaskEventFd(int irqIndex, EventFdHandle fd) { Check(); IrqSets.Add((irqIndex, -1)); IntxUnmask = fd; }
    public EventFdHandle? IntxTrigger, IntxUnmask;
    public void Reset() { Check(); Resets++; }
    public void MapGuestMemory(GuestMemory memory) => Check();
    public int Disposals;
    public void Dispose() { Disposals++; Bar2.Dispose(); }
}

/// <summary>A memory slot that records where it is placed; refuses addresses below <see cref="RamEnd"/> (as KVM refuses overlapping RAM).</summary>
internal sealed class FakeSlot(List<FakeSlot> all) : IGuestMemorySlot
{
    public const ulong RamEnd = 0x1000_0000;
    public ulong? At;
    public readonly List<ulong?> History = [];
    public void MapAt(ulong? guestAddress)
    {
        if (guestAddress < RamEnd) throw new NativeCallException("KVM_SET_USER_MEMORY_REGION", 17);
        At = guestAddress;
        History.Add(guestAddress);
    }
    public void Dispose() => all.Remove(this);
}

public sealed class PassthroughDeviceTests : IDisposable
{
    private readonly FakeTransport _transport = new();
    private readonly FakeMsi _msi = new();
    private readonly List<FakeSlot> _slots = [];
    private readonly List<string> _log = [];
    private readonly MmioBus _mmio = new();
    private readonly PciBus _bus;
    private PassthroughDevice? _device;

    public PassthroughDeviceTests() => _bus = new PciBus(_mmio, VirtioPciTransportTests.TestWindows, null, _log.Add);

    private PassthroughDevice Plug()
    {
        _device = PassthroughDevice.Create(_transport, null, new PassthroughHost(_msi, null, (host, size) => { var s = new FakeSlot(_slots); _slots.Add(s); return s; }), _log.Add);
        _bus.AddDevice(3, _device);
        return _device;
    }

    public void Dispose() => _device?.Dispose();

    private static uint Read32(PciDevice d, int o) { Span<byte> b = stackalloc byte[4]; d.ConfigRead(o, b); return BinaryPrimitives.ReadUInt32LittleEndian(b); }
    private static void Write32(PciDevice d, int o, uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); d.ConfigWrite(o, b); }
    private static void Write16(PciDevice d, int o, ushort v) { Span<byte> b = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); d.ConfigWrite(o, b); }
    private uint Mmio32(ulong address) { Span<byte> b = stackalloc byte[4]; Assert.True(_mmio.Read(address, b)); return BinaryPrimitives.ReadUInt32LittleEndian(b); }
    private void MmioWrite32(ulong address, uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); Assert.True(_mmio.Write(address, b)); }

    [Fact]
    public void IdentityComesFromTheDeviceAndMsiStaysInTheCapabilityList()
    {
        var d = Plug();
        Assert.Equal(0x1234_4B56u, Read32(d, 0));
        Assert.Equal(0xFF00_0002u, Read32(d, 8));
        Assert.Equal(0x40u, Read32(d, 0x34) & 0xFF);           // the list starts at MSI, then MSI-X
        Assert.Equal(0x0080_5005u, Read32(d, 0x40));            // MSI: 64-bit, one vector, off
        Assert.Equal(0x11u, Read32(d, 0x50) & 0xFF);
        Assert.Equal(0x60u, Read32(d, 0x50) >> 8 & 0xFF);
        Assert.Equal(0x09u, Read32(d, 0x60) & 0xFF);
        Assert.Equal(0x0001_000Bu, Read32(d, 0x100));           // extended config space is the device's
        Assert.Equal(4096, d.ConfigBytes);
        Assert.Equal(1, _transport.Resets);                      // reset when attached, as the device can
        Assert.Equal(0, d.InterruptPin);
    }

    [Fact]
    public void BarsSizeLikeHardwareAndAreEmulated()
    {
        var d = Plug();
        Write32(d, 0x10, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_F000u, Read32(d, 0x10));             // 4 KiB, 32-bit, not prefetchable
        Write32(d, 0x18, 0xFFFF_FFFF);
        Write32(d, 0x1C, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_C00Cu, Read32(d, 0x18));             // 16 KiB, 64-bit, prefetchable
        Assert.Equal(0xFFFF_FFFFu, Read32(d, 0x1C));
        Assert.DoesNotContain(_transport.Writes, w => w.Region == 7 && w.Offset is >= 0x10 and < 0x28); // BARs never reach the device
    }

    [Fact]
    public void CommandRegisterIsEmulatedAndForwarded()
    {
        var d = Plug();
        var bar2 = d.Bar(2)!;
        var slot = Assert.Single(_slots);
        Assert.Equal(bar2.MappedAt, slot.At);                    // the mmap-able BAR is a memory slot at its address
        Write16(d, 0x04, PciDevice.CommandBusMaster);           // memory decode off
        Assert.Null(bar2.MappedAt);
        Assert.Null(slot.History[^1]);
        var forwarded = _transport.Writes.Last(w => w.Region == 7);
        Assert.Equal(4UL, forwarded.Offset);
        Assert.Equal(PciDevice.CommandBusMaster, BinaryPrimitives.ReadUInt16LittleEndian(forwarded.Data));
        Write16(d, 0x04, PciDevice.CommandMemory | PciDevice.CommandBusMaster);
        Assert.Equal(bar2.MappedAt, slot.At);
    }

    [Fact]
    public void MovingAnMmapBarMovesItsSlotAndABarOverRamStaysTrapped()
    {
        var d = Plug();
        var slot = Assert.Single(_slots);
        ulong moved = d.Bar(2)!.Address + 0x10_0000;
        Write32(d, 0x18, (uint)moved);
        Write32(d, 0x1C, (uint)(moved >> 32));
        Assert.Equal(moved, slot.At);
        // Over RAM: KVM refuses the slot; the BAR still decodes (traps) and nothing throws.
        Write32(d, 0x1C, 0);
        Write32(d, 0x18, 0x0010_0000);
        Assert.Contains(_log, l => l.Contains("not mapped into the guest"));
    }

    [Fact]
    public void TrappedBarAccessesAreForwardedAsRegionAccesses()
    {
        var d = Plug();
        ulong bar0 = d.Bar(0)!.MappedAt!.Value;
        BinaryPrimitives.WriteUInt32LittleEndian(_transport.Bar0.AsSpan(0x10), 0xA5A5_5A5A);
        Assert.Equal(0xA5A5_5A5Au, Mmio32(bar0 + 0x10));
        MmioWrite32(bar0 + 0x20, 0x1234_5678);
        Assert.Contains(_transport.Writes, w => w.Region == 0 && w.Offset == 0x20);
    }

    [Fact]
    public void MsiXTableIsEmulatedAndEnablingHandsTheDeviceOneEventfdPerVector()
    {
        var d = Plug();
        ulong table = d.Bar(0)!.MappedAt!.Value + 0x800, pba = d.Bar(0)!.MappedAt!.Value + 0x900;
        MmioWrite32(table + 16, 0xFEE0_0000);                   // vector 1: address, data, unmasked
        MmioWrite32(table + 24, 0x4041);
        MmioWrite32(table + 28, 0);
        Assert.DoesNotContain(_transport.Writes, w => w.Region == 0); // table writes never reach the device
        Write16(d, 0x52, 0x8000);                               // MSI-X enable
        Assert.Equal((Vfio.VFIO_PCI_MSIX_IRQ_INDEX, 4), _transport.IrqSets.Single());
        Assert.Equal(0x8003u, Read32(d, 0x50) >> 16);
        d.OnVectorSignalled(1);
        Assert.Equal((0xFEE0_0000UL, 0x4041u), Assert.Single(_msi.Fired));
        d.OnVectorSignalled(2);                                 // masked: latched in the PBA
        Assert.Single(_msi.Fired);
        Assert.Equal(0x4u, Mmio32(pba));
        Write16(d, 0x52, 0);                                    // disable: the device's vectors are torn down
        Assert.Equal((Vfio.VFIO_PCI_MSIX_IRQ_INDEX, 0), _transport.IrqSets[^1]);
    }

    [Fact]
    public void GarbageInTheMsiXTableIsHandledLikeHardware()
    {
        var d = Plug();
        ulong bar0 = d.Bar(0)!.MappedAt!.Value;
        var random = new Random(14);
        for (int i = 0; i < 500; i++)
        {
            ulong at = bar0 + 0x800 + (ulong)random.Next(0, 0x120);
            var data = new byte[random.Next(1, 9)];
            random.NextBytes(data);
            _mmio.Write(at, data);
        }
        Write16(d, 0x52, 0xC000);
        for (int v = 0; v < 4; v++) d.OnVectorSignalled(v);
        Span<byte> control = stackalloc byte[4];
        for (int v = 0; v < 4; v++)
        {
            _mmio.Read(bar0 + 0x800 + (ulong)v * 16 + 12, control);
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(control) & ~1u); // reserved bits read as zero
        }
    }

    [Fact]
    public void AFailedTransportReadsAsAllOnesAndNothingThrows()
    {
        var d = Plug();
        var slot = Assert.Single(_slots);
        Assert.NotNull(slot.At);
        _transport.Fail();
        ulong bar0 = d.Bar(0)!.MappedAt!.Value;
        Assert.Equal(0xFFFF_FFFFu, Mmio32(bar0 + 0x10));
        MmioWrite32(bar0 + 0x10, 1);
        Assert.Equal(0xFFFF_FFFFu, Read32(d, 0x60));
        Assert.Equal(0xFFFF_FFFFu, Read32(d, 0));                // the whole config space, like a device removed by surprise
        Assert.Equal(0xFFFF_FFFFu, Read32(d, 0x10));
        Assert.Equal(0xFFFF_FFFFu, Mmio32(bar0 + 0x800));         // the emulated MSI-X table too
        Assert.Null(slot.At);                                    // the mapped BAR area traps now (reads all-ones)
        Write16(d, 0x52, 0x8000);
        Write16(d, 0x04, 0);
        for (int i = 0; i < 100; i++) Mmio32(bar0 + 0x10);
        // Said once, not once per access.
        Assert.Single(_log, l => l.Contains("went away"));
        Assert.Equal(0x1234_4B56u, d.VendorId | (uint)d.DeviceId << 16); // the VMM still knows what it was
    }

    [Fact]
    public void SnapshotsAreRefusedWithATypedError()
    {
        var d = Plug();
        var e = Assert.Throws<PassthroughNotMigratableException>(() => d.CaptureState());
        Assert.Contains("fake device", e.Message);
    }

    [Fact]
    public void TheExpansionRomIsExposedWhenTheDeviceHasOne()
    {
        _transport.Rom = new byte[3000];
        _transport.Rom[0] = 0x55; _transport.Rom[1] = 0xAA;
        var d = Plug();
        Assert.NotNull(d.ExpansionRom);
        Write32(d, 0x30, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_F001u, Read32(d, 0x30));             // 4 KiB ROM BAR, enable bit writable
    }

    [Fact]
    public void MmapAreasLeaveOutTheMsiXPages()
    {
        var pieces = PassthroughDevice.Subtract(new MmapArea(0, 0x4000), [(0x1000, 0x2000)]).ToArray();
        Assert.Equal([new MmapArea(0, 0x1000), new MmapArea(0x2000, 0x2000)], pieces);
    }
}
