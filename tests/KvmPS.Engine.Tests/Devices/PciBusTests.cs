using System.Buffers.Binary;
using KvmPS.Acpi;
using KvmPS.Devices;
using KvmPS.Devices.Pci;
using KvmPS.Vm;
using KvmPS.Vm.Firmware;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>A test function with a 32-bit BAR0 (4 KiB) and a 64-bit prefetchable BAR2 (1 MiB) that echo writes.</summary>
internal sealed class EchoDevice : PciDevice
{
    public readonly List<(int Bar, ulong Offset)> Writes = new();
    public readonly List<(int Bar, ulong At)> Mapped = new();
    public EchoDevice() : base(0x1234, 0x5678, 0x058000, 2, 0x1234, 0x0001, interruptPin: 2)
    {
        DefineBar(0, 0x1000);
        DefineBar(2, 0x10_0000, is64Bit: true, prefetchable: true);
    }
    public override string Name => "echo";
    protected override void BarRead(PciBar bar, ulong offset, Span<byte> data) => data.Fill((byte)(0xA0 + bar.Index));
    protected override void BarWrite(PciBar bar, ulong offset, ReadOnlySpan<byte> data) => Writes.Add((bar.Index, offset));
    protected override void OnBarMapped(PciBar bar) => Mapped.Add((bar.Index, bar.MappedAt!.Value));
}

public sealed class PciBusTests
{
    private readonly MmioBus _mmio = new();
    private readonly PciBus _bus;
    private readonly Dictionary<uint, FakeLine> _lines = new();

    public PciBusTests() => _bus = new PciBus(_mmio, VirtioPciTransportTests.TestWindows, gsi => _lines[gsi] = new FakeLine());

    private uint Cf8Read(int dev, int reg, int size = 4, int fn = 0)
    {
        Span<byte> a = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(a, 0x8000_0000u | (uint)dev << 11 | (uint)fn << 8 | ((uint)reg & 0xFC));
        _bus.ConfigPorts.Write(0, a);
        Span<byte> d = stackalloc byte[4];
        d.Clear();
        _bus.ConfigPorts.Read(4 + (ulong)(reg & 3), d[..size]);
        return BinaryPrimitives.ReadUInt32LittleEndian(d);
    }

    private void Cf8Write(int dev, int reg, uint value, int size = 4)
    {
        Span<byte> a = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(a, 0x8000_0000u | (uint)dev << 11 | ((uint)reg & 0xFC));
        _bus.ConfigPorts.Write(0, a);
        Span<byte> d = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(d, value);
        _bus.ConfigPorts.Write(4 + (ulong)(reg & 3), d[..size]);
    }

    private uint EcamRead(int dev, int reg)
    {
        Span<byte> d = stackalloc byte[4];
        _bus.Ecam.Read((ulong)dev << 15 | (uint)reg, d);
        return BinaryPrimitives.ReadUInt32LittleEndian(d);
    }

    private void EcamWrite(int dev, int reg, uint value)
    {
        Span<byte> d = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(d, value);
        _bus.Ecam.Write((ulong)dev << 15 | (uint)reg, d);
    }

    [Fact]
    public void Mechanism1ReadsTheHostBridgeWithEveryAccessWidth()
    {
        Assert.Equal(0x29C0_8086u, Cf8Read(0, 0));
        Assert.Equal(0x8086u, Cf8Read(0, 0, 2));
        Assert.Equal(0x29C0u, Cf8Read(0, 2, 2));
        Assert.Equal(0x29u, Cf8Read(0, 3, 1));
        Assert.Equal(0x0600_0000u, Cf8Read(0, 8) & 0xFFFF_FF00);
        Assert.Equal(0xFFFF_FFFFu, Cf8Read(5, 0));       // empty slot
        Assert.Equal(0xFFFF_FFFFu, Cf8Read(0, 0, fn: 1)); // no function 1
        // The address register reads back; without the enable bit the data port reads all-ones.
        Span<byte> a = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(a, 0x0000_0000);
        _bus.ConfigPorts.Write(0, a);
        _bus.ConfigPorts.Read(0, a);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(a));
        _bus.ConfigPorts.Read(4, a);
        Assert.Equal(0xFFFF_FFFFu, BinaryPrimitives.ReadUInt32LittleEndian(a));
    }

    [Fact]
    public void EcamAndMechanism1SeeTheSameSpace()
    {
        var d = new EchoDevice();
        _bus.AddDevice(4, d);
        Assert.Equal(0x5678_1234u, EcamRead(4, 0));
        Assert.Equal(Cf8Read(4, 0x10), EcamRead(4, 0x10));
        EcamWrite(4, 0x0C, 0x10);             // cache line size via ECAM
        Assert.Equal(0x10u, Cf8Read(4, 0x0C, 1));
        Assert.Equal(0u, EcamRead(4, 0x100)); // extended config space: no capabilities
        Assert.Equal(0xFFFF_FFFFu, EcamRead(9, 0));
    }

    [Fact]
    public void BarSizingProtocolAndPreassignment()
    {
        var d = new EchoDevice();
        _bus.AddDevice(1, d);
        // Pre-assigned: BAR0 in the 32-bit window, the 64-bit BAR in the 64-bit window, memory decode on.
        uint bar0 = Cf8Read(1, 0x10);
        Assert.Equal(0xC000_0000u, bar0);
        ulong bar2 = Cf8Read(1, 0x18) | (ulong)Cf8Read(1, 0x1C) << 32;
        Assert.Equal(0x10_0000_0000UL | 0b1100, bar2);   // 64-bit, prefetchable
        Assert.Equal(PciDevice.CommandMemory, Cf8Read(1, 4, 2) & PciDevice.CommandMemory);

        Cf8Write(1, 4, 0, 2); // memory decode off while sizing, as an OS does
        Cf8Write(1, 0x10, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_F000u, Cf8Read(1, 0x10));   // 4 KiB, 32-bit, non-prefetchable
        Cf8Write(1, 0x18, 0xFFFF_FFFF);
        Cf8Write(1, 0x1C, 0xFFFF_FFFF);
        Assert.Equal(0xFFF0_000Cu, Cf8Read(1, 0x18));   // 1 MiB, 64-bit prefetchable
        Assert.Equal(0xFFFF_FFFFu, Cf8Read(1, 0x1C));
        Assert.Equal(0u, Cf8Read(1, 0x14));             // BAR1 is unimplemented
        Cf8Write(1, 0x14, 0xFFFF_FFFF);
        Assert.Equal(0u, Cf8Read(1, 0x14));
        Assert.Equal(0u, Cf8Read(1, 0x30));             // no expansion ROM

        // Restore (low bits are read-only), then enable decode.
        Cf8Write(1, 0x10, bar0 | 0xF);
        Cf8Write(1, 0x18, (uint)bar2);
        Cf8Write(1, 0x1C, (uint)(bar2 >> 32));
        Assert.Equal(bar0, Cf8Read(1, 0x10));
        Cf8Write(1, 4, PciDevice.CommandMemory, 2);
        Span<byte> b = stackalloc byte[4];
        Assert.True(_mmio.Read(0xC000_0010, b));
        Assert.Equal(0xA0A0_A0A0u, BinaryPrimitives.ReadUInt32LittleEndian(b));
        Assert.True(_mmio.Read(0x10_0000_0000 + 0xFFFFC, b));
        Assert.Equal(0xA2A2_A2A2u, BinaryPrimitives.ReadUInt32LittleEndian(b));
    }

    [Fact]
    public void GuestRelocationMovesTheMmioRegistration()
    {
        var d = new EchoDevice();
        _bus.AddDevice(1, d);
        Span<byte> b = stackalloc byte[4];
        Assert.True(_mmio.Read(0xC000_0000, b));
        Cf8Write(1, 0x10, 0xD000_0000);
        Assert.False(_mmio.Read(0xC000_0000, b));
        Assert.True(_mmio.Write(0xD000_0ABC, b));
        Assert.Equal((0, 0xABCUL), d.Writes[^1]);
        Assert.Equal((0, 0xD000_0000UL), d.Mapped[^1]);
        Cf8Write(1, 4, 0, 2);               // memory decode off: nothing decodes
        Assert.False(_mmio.Read(0xD000_0000, b));
        Cf8Write(1, 4, PciDevice.CommandMemory, 2);
        Assert.True(_mmio.Read(0xD000_0000, b));
        Cf8Write(1, 0x10, 0);               // address 0 = unassigned: not decoded
        Assert.False(_mmio.Read(0xD000_0000, b));
    }

    [Fact]
    public void ConflictingBarIsNotDecodedAndNothingThrows()
    {
        var d1 = new EchoDevice();
        var d2 = new EchoDevice();
        var log = new List<string>();
        var bus = new PciBus(_mmio, VirtioPciTransportTests.TestWindows with { Mmio64Size = 0 }, null, log.Add);
        bus.AddDevice(1, d1);
        bus.AddDevice(2, d2);
        // d2's BAR0 onto d1's BAR0.
        uint d1Bar = d1.Bar(0)!.MappedAt is ulong a ? (uint)a : 0;
        Span<byte> v = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(v, d1Bar);
        d2.ConfigWrite(0x10, v);
        Assert.Null(d2.Bar(0)!.MappedAt);
        Assert.Contains(log, l => l.Contains("not decoded"));
        // Without a 64-bit window, 64-bit BARs are placed below 4 GiB.
        Assert.True(d1.Bar(2)!.Address < 0x1_0000_0000);
    }

    [Fact]
    public void AnUnpluggedDevicesBarRangesAreHandedOutAgain()
    {
        var first = new EchoDevice();
        _bus.AddDevice(5, first);
        ulong bar0 = first.Bar(0)!.Address, bar2 = first.Bar(2)!.Address;
        // Plugged and unplugged many times (a hot-plug slot): the same ranges, not new ones from the windows.
        for (int i = 0; i < 100; i++)
        {
            _bus.RemoveDevice(5);
            var again = new EchoDevice();
            _bus.AddDevice(5, again);
            Assert.Equal(bar0, again.Bar(0)!.Address);
            Assert.Equal(bar2, again.Bar(2)!.Address);
        }
        var other = new EchoDevice();
        _bus.AddDevice(6, other);
        Assert.NotEqual(bar0, other.Bar(0)!.Address);
    }

    [Fact]
    public void HotPlugSlotsAndIntxSwizzle()
    {
        var d = new EchoDevice();
        Assert.Equal(1, _bus.AddDevice(d));
        Assert.Throws<InvalidOperationException>(() => _bus.AddDevice(1, new EchoDevice()));
        Assert.Throws<ArgumentOutOfRangeException>(() => _bus.AddDevice(0, new EchoDevice()));
        Assert.Throws<ArgumentOutOfRangeException>(() => _bus.AddDevice(32, new EchoDevice()));
        Assert.Equal(PciBus.IntxGsi(1, 2), Cf8Read(1, 0x3C, 1));  // INTB of slot 1
        Assert.Equal(2u, Cf8Read(1, 0x3D, 1));
        Assert.Equal(18u, PciBus.IntxGsi(1, 2));
        Assert.Equal(16u, PciBus.IntxGsi(4, 1));
        Assert.Equal(19u, PciBus.IntxGsi(31, 1));
        Span<byte> b = stackalloc byte[4];
        Assert.True(_mmio.Read(0xC000_0000, b));
        _bus.RemoveDevice(1);
        Assert.False(_mmio.Read(0xC000_0000, b));
        Assert.Equal(0xFFFF_FFFFu, Cf8Read(1, 0));
        _bus.AddDevice(1, new EchoDevice()); // the slot is free again (new BAR space)
        Assert.Equal(0x5678_1234u, Cf8Read(1, 0));
    }

    [Fact]
    public void AmlEncodings()
    {
        Assert.Equal([0x3F], Aml.PkgLength(62));
        Assert.Equal([0x41, 0x04], Aml.PkgLength(63));        // 65 with two length bytes: 0b01 << 6 | 0x1, then 0x04
        Assert.Equal([0x83, 0x00, 0x01], Aml.PkgLength(0x1000)); // 0x1003 with three bytes
        Assert.Equal([0x0C, 0x41, 0xD0, 0x0A, 0x03], Aml.EisaId("PNP0A03"));
        Assert.Equal([0x0C, 0x41, 0xD0, 0x0C, 0x02], Aml.EisaId("PNP0C02"));
        Assert.Equal([0x0A, 0x10], Aml.Integer(0x10));
        Assert.Equal([0x0B, 0x34, 0x12], Aml.Integer(0x1234));
        Assert.Equal([0x5C, (byte)'_', (byte)'S', (byte)'B', (byte)'_'], Aml.NameString("\\_SB"));
    }

    [Fact]
    public void AcpiTablesIncludeTheHostBridgeAndMcfg()
    {
        var w = VirtioPciTransportTests.TestWindows;
        byte[] mcfg = PciAcpi.BuildMcfg(w);
        Assert.Equal(60, mcfg.Length);
        Assert.Equal(0, mcfg.Aggregate(0, (s, x) => (s + x) & 0xFF));
        Assert.Equal(w.EcamBase, BinaryPrimitives.ReadUInt64LittleEndian(mcfg.AsSpan(44)));
        Assert.Equal(0, mcfg[54]);
        Assert.Equal(0, mcfg[55]); // buses 0..0

        byte[] aml = PciAcpi.BuildDsdtAml(w);
        var tables = AcpiTables.Build(new AcpiConfig(1, 1) { ExtraDsdtAml = aml, ExtraTables = [mcfg] });
        byte[] dsdt = tables.Select(t => t.Bytes).First(b => b.AsSpan(0, 4).SequenceEqual("DSDT"u8));
        Assert.True(dsdt.AsSpan().IndexOf(aml) > 0);
        Assert.True(dsdt.AsSpan().IndexOf("PCI0"u8) > 0);
        Assert.True(dsdt.AsSpan().IndexOf("_PRT"u8) > 0);
        Assert.Contains(tables, t => t.Bytes.AsSpan(0, 4).SequenceEqual("MCFG"u8));
        // Scope PkgLength covers the whole object: the AML ends exactly at the table end.
        int scope = dsdt.AsSpan().IndexOf(aml);
        Assert.Equal(dsdt.Length, scope + aml.Length);
        Assert.Equal(0x10, aml[0]);
        int lead = aml[1];
        int len = (lead >> 6) switch { 0 => lead & 0x3F, 1 => (lead & 0xF) | aml[2] << 4, 2 => (lead & 0xF) | aml[2] << 4 | aml[3] << 12, _ => -1 };
        Assert.Equal(aml.Length - 1, len);
    }
}
