using System.Buffers.Binary;
using System.Text;
using KvmPS.Vm;
using KvmPS.Vm.Firmware;

namespace KvmPS.Engine.Tests.Firmware;

/// <summary>The MP 1.4 floating pointer and configuration table, read back from guest memory.</summary>
public class MpTableTests
{
    private static byte Sum(ReadOnlySpan<byte> data)
    {
        byte s = 0;
        foreach (byte b in data) s += b;
        return s;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(254)]
    public void FloatingPointerAndTableHaveValidChecksumsAndOneEntryPerCpu(int vcpus)
    {
        using var memory = GuestMemory.Create(64UL << 20);
        MpTable.WriteTo(memory, vcpus, ioApicId: vcpus);

        byte[] fp = new byte[16];
        memory.Read(MpTable.Address, fp);
        Assert.Equal("_MP_", Encoding.ASCII.GetString(fp, 0, 4));
        Assert.Equal(0, Sum(fp));
        Assert.Equal(1, fp[8]);  // length in paragraphs
        Assert.Equal(4, fp[9]);  // spec 1.4
        Assert.Equal(0, fp[11]); // feature byte 1: 0 = a configuration table is present
        uint tableAddress = BinaryPrimitives.ReadUInt32LittleEndian(fp.AsSpan(4));
        Assert.True(tableAddress >= MemoryLayout.EbdaStart && tableAddress < MemoryLayout.HighMemoryStart);

        ushort length = memory.ReadUInt16(tableAddress + 4);
        byte[] table = new byte[length];
        memory.Read(tableAddress, table);
        Assert.Equal("PCMP", Encoding.ASCII.GetString(table, 0, 4));
        Assert.Equal(0, Sum(table));
        Assert.Equal(4, table[6]);
        Assert.Equal((uint)MemoryLayout.LocalApicAddress, BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(36)));
        Assert.True(tableAddress + length <= MemoryLayout.HighMemoryStart);
        Assert.True(MemoryLayout.MpTableAddress + 16 <= MemoryLayout.EbdaStart + 1024, "the floating pointer must be in the EBDA's first KiB");

        ushort entryCount = BinaryPrimitives.ReadUInt16LittleEndian(table.AsSpan(34));
        var processors = new List<(byte ApicId, byte Flags)>();
        int ioapics = 0, ioInts = 0, localInts = 0;
        var buses = new Dictionary<byte, string>();
        var pciIntx = new Dictionary<byte, byte>();
        byte ioapicId = 0;
        var irqToPin = new Dictionary<byte, (byte Type, byte Pin)>();
        int off = 44, counted = 0;
        while (off < table.Length)
        {
            byte type = table[off];
            int size = type == 0 ? 20 : 8;
            var e = table.AsSpan(off, size);
            switch (type)
            {
                case 0: processors.Add((e[1], e[3])); break;
                case 1: buses[e[1]] = Encoding.ASCII.GetString(e[2..8]); break;
                case 2: ioapics++; ioapicId = e[1]; Assert.Equal((uint)MemoryLayout.IoApicAddress, BinaryPrimitives.ReadUInt32LittleEndian(e[4..])); break;
                case 3:
                    Assert.Equal(ioapicId, e[6]);
                    if (buses[e[4]] == "ISA   ") { ioInts++; irqToPin[e[5]] = (e[1], e[7]); }
                    else pciIntx[e[5]] = e[7];
                    break;
                case 4: localInts++; break;
                default: Assert.Fail($"unknown MP entry type {type} at {off}"); break;
            }
            off += size;
            counted++;
        }
        Assert.Equal(table.Length, off);
        Assert.Equal(entryCount, counted);
        Assert.Equal(vcpus, processors.Count);
        for (int i = 0; i < vcpus; i++)
        {
            Assert.Equal(i, processors[i].ApicId);
            Assert.Equal(i == 0 ? 3 : 1, processors[i].Flags); // enabled, and BSP for the first
        }
        Assert.Equal(new Dictionary<byte, string> { [0] = "PCI   ", [1] = "ISA   " }, buses);
        Assert.Equal(1, ioapics);
        Assert.Equal(vcpus, ioapicId);
        Assert.Equal(16, ioInts);
        Assert.Equal(2, localInts);
        Assert.Equal(((byte)0, (byte)2), irqToPin[0]); // timer: IRQ0 -> INTIN2
        Assert.Equal(((byte)0, (byte)4), irqToPin[4]); // COM1
        // PCI INTx, as in the DSDT _PRT: slot 1 INTA -> GSI 17, slot 1 INTD -> GSI 16, slot 2 INTB -> GSI 19.
        Assert.Equal(31 * 4, pciIntx.Count);
        Assert.Equal(17, pciIntx[(1 << 2) | 0]);
        Assert.Equal(16, pciIntx[(1 << 2) | 3]);
        Assert.Equal(19, pciIntx[(2 << 2) | 1]);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(255)]
    public void OutOfRangeCpuCountsAreRefused(int vcpus) => Assert.Throws<ArgumentOutOfRangeException>(() => MpTable.Build(vcpus, 1));
}
