using System.Buffers.Binary;
using System.Text;
using KvmPS.Acpi;
using KvmPS.Vm;
using KvmPS.Vm.Firmware;

namespace KvmPS.Engine.Tests.Firmware;

/// <summary>The ACPI tables as placed in guest memory: checksums, the RSDP/XSDT/RSDT links, FADT and MADT contents.</summary>
public class AcpiTablesTests
{
    private static byte Sum(ReadOnlySpan<byte> data)
    {
        byte s = 0;
        foreach (byte b in data) s += b;
        return s;
    }

    private static string Signature(byte[] table) => Encoding.ASCII.GetString(table, 0, 4);

    /// <summary>Writes the tables to real guest memory and reads them back through the pointers, as a guest would.</summary>
    private static Dictionary<string, (ulong Address, byte[] Bytes)> ReadBack(AcpiConfig config, out byte[] rsdp)
    {
        using var memory = GuestMemory.Create(64UL << 20);
        AcpiTables.WriteTo(memory, config);
        rsdp = new byte[36];
        memory.Read(AcpiTables.RsdpAddress, rsdp);
        var found = new Dictionary<string, (ulong, byte[])>();
        byte[] Table(ulong address)
        {
            uint length = memory.ReadUInt32(address + 4);
            byte[] t = new byte[length];
            memory.Read(address, t);
            return t;
        }
        ulong xsdtAddress = BinaryPrimitives.ReadUInt64LittleEndian(rsdp.AsSpan(24));
        byte[] xsdt = Table(xsdtAddress);
        found["XSDT"] = (xsdtAddress, xsdt);
        ulong rsdtAddress = BinaryPrimitives.ReadUInt32LittleEndian(rsdp.AsSpan(16));
        found["RSDT"] = (rsdtAddress, Table(rsdtAddress));
        for (int off = 36; off < xsdt.Length; off += 8)
        {
            ulong address = BinaryPrimitives.ReadUInt64LittleEndian(xsdt.AsSpan(off));
            byte[] t = Table(address);
            found[Signature(t)] = (address, t);
        }
        ulong dsdtAddress = BinaryPrimitives.ReadUInt64LittleEndian(found["FACP"].Item2.AsSpan(140));
        found["DSDT"] = (dsdtAddress, Table(dsdtAddress));
        return found;
    }

    [Fact]
    public void EveryTableHasAValidChecksum()
    {
        var placed = AcpiTables.Build(new AcpiConfig(2, 4));
        Assert.Equal(AcpiTables.RsdpAddress, placed[0].Address);
        byte[] rsdp = placed[0].Bytes;
        Assert.Equal("RSD PTR ", Encoding.ASCII.GetString(rsdp, 0, 8));
        Assert.Equal(0, Sum(rsdp.AsSpan(0, 20)));   // ACPI 1.0 checksum
        Assert.Equal(0, Sum(rsdp));                  // extended checksum over all 36 bytes
        Assert.Equal(36u, BinaryPrimitives.ReadUInt32LittleEndian(rsdp.AsSpan(20)));
        Assert.Equal(2, rsdp[15]);
        foreach (var (address, table) in placed.Skip(1))
        {
            Assert.Equal((uint)table.Length, BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(4)));
            Assert.True(Sum(table) == 0, $"{Signature(table)} at 0x{address:x} has a bad checksum");
            Assert.True(address >= MemoryLayout.AcpiStart && address + (ulong)table.Length <= MemoryLayout.AcpiEnd);
            Assert.Equal(0UL, address % 8);
        }
        var signatures = placed.Skip(1).Select(p => Signature(p.Bytes)).OrderBy(s => s).ToArray();
        Assert.Equal(["APIC", "DSDT", "FACP", "RSDT", "XSDT"], signatures);
    }

    [Fact]
    public void TablesDoNotOverlap()
    {
        var placed = AcpiTables.Build(new AcpiConfig(8, 254)).OrderBy(p => p.Address).ToArray();
        for (int i = 1; i < placed.Length; i++)
            Assert.True(placed[i - 1].Address + (ulong)placed[i - 1].Bytes.Length <= placed[i].Address);
    }

    [Fact]
    public void RsdpLinksXsdtAndRsdtWhichListFadtAndMadt()
    {
        var tables = ReadBack(new AcpiConfig(1, 1), out _);
        Assert.Equal("XSDT", Signature(tables["XSDT"].Bytes));
        Assert.Equal("RSDT", Signature(tables["RSDT"].Bytes));
        Assert.Contains("FACP", tables.Keys);
        Assert.Contains("APIC", tables.Keys);
        // The RSDT lists the same tables with 32-bit pointers.
        byte[] xsdt = tables["XSDT"].Bytes, rsdt = tables["RSDT"].Bytes;
        Assert.Equal((xsdt.Length - 36) / 8, (rsdt.Length - 36) / 4);
        for (int i = 0; i < (xsdt.Length - 36) / 8; i++)
            Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(xsdt.AsSpan(36 + i * 8)), BinaryPrimitives.ReadUInt32LittleEndian(rsdt.AsSpan(36 + i * 4)));
        foreach (var (_, t) in tables.Values) Assert.Equal(0, Sum(t));
    }

    [Fact]
    public void FadtPointsAtTheDsdtAndThePmBlock()
    {
        var tables = ReadBack(new AcpiConfig(1, 1), out _);
        byte[] fadt = tables["FACP"].Bytes;
        ulong dsdt = tables["DSDT"].Address;
        Assert.Equal((uint)dsdt, BinaryPrimitives.ReadUInt32LittleEndian(fadt.AsSpan(40)));
        Assert.Equal(MemoryLayout.SciIrq, BinaryPrimitives.ReadUInt16LittleEndian(fadt.AsSpan(46)));
        Assert.Equal(MemoryLayout.Pm1aEventPort, BinaryPrimitives.ReadUInt32LittleEndian(fadt.AsSpan(56)));
        Assert.Equal(MemoryLayout.Pm1aControlPort, BinaryPrimitives.ReadUInt32LittleEndian(fadt.AsSpan(64)));
        Assert.Equal(MemoryLayout.PmTimerPort, BinaryPrimitives.ReadUInt32LittleEndian(fadt.AsSpan(76)));
        Assert.Equal(276, fadt.Length); // ACPI 6.x FADT
        byte[] dsdtBytes = tables["DSDT"].Bytes;
        Assert.Contains("_S5_", Encoding.ASCII.GetString(dsdtBytes));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 4)]
    [InlineData(4, 8)]
    [InlineData(3, 254)]
    public void MadtListsPresentCpusEnabledAndTheRestOnlineCapable(int count, int max)
    {
        var tables = ReadBack(new AcpiConfig(count, max), out _);
        byte[] madt = tables["APIC"].Bytes;
        Assert.Equal((uint)MemoryLayout.LocalApicAddress, BinaryPrimitives.ReadUInt32LittleEndian(madt.AsSpan(36)));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(madt.AsSpan(40)) & 1); // PCAT_COMPAT

        var lapics = new List<(byte Uid, byte ApicId, uint Flags)>();
        var ioapics = new List<(byte Id, uint Address, uint GsiBase)>();
        var overrides = new List<(byte Source, uint Gsi)>();
        int nmis = 0;
        for (int off = 44; off < madt.Length;)
        {
            byte type = madt[off], length = madt[off + 1];
            Assert.True(length >= 2 && off + length <= madt.Length, $"bad MADT entry at {off}");
            var e = madt.AsSpan(off, length);
            switch (type)
            {
                case 0: lapics.Add((e[2], e[3], BinaryPrimitives.ReadUInt32LittleEndian(e[4..]))); break;
                case 1: ioapics.Add((e[2], BinaryPrimitives.ReadUInt32LittleEndian(e[4..]), BinaryPrimitives.ReadUInt32LittleEndian(e[8..]))); break;
                case 2: overrides.Add((e[3], BinaryPrimitives.ReadUInt32LittleEndian(e[4..]))); break;
                case 4: nmis++; break;
            }
            off += length;
        }

        Assert.Equal(max, lapics.Count);
        Assert.Equal(count, lapics.Count(l => l.Flags == 1));     // Enabled
        Assert.Equal(max - count, lapics.Count(l => l.Flags == 2)); // Online Capable, not enabled
        for (int i = 0; i < max; i++)
        {
            Assert.Equal(i, lapics[i].ApicId);
            Assert.Equal(i, lapics[i].Uid);
            Assert.Equal(i < count ? 1u : 2u, lapics[i].Flags);
        }
        var ioapic = Assert.Single(ioapics);
        Assert.Equal(max, ioapic.Id);
        Assert.Equal((uint)MemoryLayout.IoApicAddress, ioapic.Address);
        Assert.Equal(0u, ioapic.GsiBase);
        Assert.Contains((byte)0, overrides.Select(o => o.Source));
        Assert.Equal(2u, overrides.Single(o => o.Source == 0).Gsi);
        Assert.Equal(1, nmis);
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(3, 2)]
    [InlineData(1, 255)]
    public void OutOfRangeCpuCountsAreRefused(int count, int max) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => AcpiTables.Build(new AcpiConfig(count, max)));

    [Fact]
    public void ExtraTablesAreListedInTheXsdt()
    {
        var mcfg = new AcpiTableWriter("MCFG", 1).Zeros(8).Finish();
        var tables = ReadBack(new AcpiConfig(1, 1) { ExtraTables = [mcfg] }, out _);
        Assert.Contains("MCFG", tables.Keys);
        Assert.Equal(0, Sum(tables["MCFG"].Bytes));
    }
}
