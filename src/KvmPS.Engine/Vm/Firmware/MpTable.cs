using System.Buffers.Binary;
using System.Text;
using KvmPS.Acpi;

namespace KvmPS.Vm.Firmware;

/// <summary>Intel MultiProcessor Specification 1.4 floating pointer and configuration table, for guests that look for SMP there.</summary>
public static class MpTable
{
    /// <summary>The floating pointer: in the first KiB of the EBDA, where guests search for it.</summary>
    public const ulong Address = MemoryLayout.MpTableAddress;
    /// <summary>The configuration table: in the BIOS area, which holds it for any vCPU count (254 entries need ~5 KiB,
    /// more than the 1 KiB EBDA slot).</summary>
    public const ulong ConfigTableAddress = MemoryLayout.MpConfigTableAddress;
    private const byte ApicVersion = 0x14, IoApicVersion = 0x11;

    public static byte[] Build(int vcpuCount, int ioApicId)
    {
        if (vcpuCount < 1 || vcpuCount > 254) throw new ArgumentOutOfRangeException(nameof(vcpuCount), $"vCPU count {vcpuCount} out of range (1-254).");
        var entries = new List<byte>();
        int count = 0;
        void Entry(params byte[] b) { entries.AddRange(b); count++; }
        static byte[] U32(uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); return b; }

        for (int i = 0; i < vcpuCount; i++)
        {
            var e = new byte[20];
            e[0] = 0; e[1] = (byte)i; e[2] = ApicVersion;
            e[3] = (byte)(1 | (i == 0 ? 2 : 0)); // enabled, BSP
            U32(0x600).CopyTo(e, 4);           // CPU signature: family 6
            U32(0x201).CopyTo(e, 8);           // feature flags: FPU, APIC
            Entry(e);
        }
        // Bus IDs as PC firmware numbers them: the PCI bus first (its ID is its PCI bus number), then ISA.
        const byte PciBusId = 0, IsaBusId = 1;
        Entry([1, PciBusId, .. "PCI   "u8]);
        Entry([1, IsaBusId, .. "ISA   "u8]);
        Entry([2, (byte)ioApicId, IoApicVersion, 1, .. U32((uint)MemoryLayout.IoApicAddress)]);
        for (byte irq = 0; irq < 16; irq++)
        {
            byte intType = 0; // INT
            byte pin = irq == 0 ? (byte)2 : irq;
            if (irq == 2) { intType = 3; pin = 0; } // cascade line: ExtINT on pin 0
            Entry([3, intType, 0, 0, IsaBusId, irq, (byte)ioApicId, pin]);
        }
        // PCI INTx: source IRQ = (slot << 2) | (pin − 1); the same swizzle onto GSIs 16–23 as the DSDT's _PRT.
        // Flags 0: the PCI bus's own polarity and trigger (active low, level).
        for (int slot = 1; slot < 32; slot++)
            for (int pin = 1; pin <= 4; pin++)
                Entry([3, 0, 0, 0, PciBusId, (byte)((slot << 2) | (pin - 1)), (byte)ioApicId, (byte)Devices.Pci.PciBus.IntxGsi(slot, pin)]);
        Entry([4, 3, 0, 0, 0, 0, 0xFF, 0]); // LINT0: ExtINT
        Entry([4, 1, 0, 0, 0, 0, 0xFF, 1]); // LINT1: NMI

        const int headerSize = 44, floatSize = 16;
        byte[] table = new byte[floatSize + headerSize + entries.Count];
        var fp = table.AsSpan(0, floatSize);
        // Returned as one buffer (pointer, then configuration table); WriteTo places the two parts.
        Encoding.ASCII.GetBytes("_MP_").CopyTo(fp);
        BinaryPrimitives.WriteUInt32LittleEndian(fp[4..], (uint)ConfigTableAddress);
        fp[8] = 1; fp[9] = 4; // length in 16-byte units, spec revision 1.4
        fp[10] = AcpiTableWriter.Checksum(fp);

        var h = table.AsSpan(floatSize);
        Encoding.ASCII.GetBytes("PCMP").CopyTo(h);
        BinaryPrimitives.WriteUInt16LittleEndian(h[4..], (ushort)(headerSize + entries.Count));
        h[6] = 4;
        Encoding.ASCII.GetBytes("KVMPS   ").CopyTo(h[8..]);
        Encoding.ASCII.GetBytes("KVMPS-VMM   ").CopyTo(h[16..]);
        BinaryPrimitives.WriteUInt16LittleEndian(h[34..], (ushort)count);
        BinaryPrimitives.WriteUInt32LittleEndian(h[36..], (uint)MemoryLayout.LocalApicAddress);
        entries.ToArray().CopyTo(h[headerSize..]);
        h[7] = AcpiTableWriter.Checksum(h);
        return table;
    }

    public static void WriteTo(GuestMemory memory, int vcpuCount, int ioApicId)
    {
        byte[] table = Build(vcpuCount, ioApicId);
        memory.Write(Address, table.AsSpan(0, 16));
        memory.Write(ConfigTableAddress, table.AsSpan(16));
    }
}
