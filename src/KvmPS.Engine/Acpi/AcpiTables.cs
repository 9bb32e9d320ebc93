using System.Buffers.Binary;
using System.Text;
using KvmPS.Vm;

namespace KvmPS.Acpi;

/// <summary>What the ACPI tables describe about the machine.</summary>
public sealed record AcpiConfig(int VcpuCount, int MaxVcpus)
{
    /// <summary>DSDT body AML (device objects) appended by other layers, e.g. PCI with _PRT.</summary>
    public byte[] ExtraDsdtAml { get; init; } = [];
    /// <summary>
    /// The i8042's PS/2 keyboard and mouse are announced (FADT IAPC_BOOT_ARCH 8042 bit, DSDT PNP0303/PNP0F13), so
    /// SeaBIOS and Linux drive them: machines with a display device, where someone types (docs/display.md).
    /// </summary>
    public bool Ps2Devices { get; init; }
    /// <summary>Additional tables (e.g. MCFG) to list in the XSDT.</summary>
    public IReadOnlyList<byte[]> ExtraTables { get; init; } = [];
}

/// <summary>
/// RSDP, RSDT, XSDT, FADT, DSDT and MADT for a PC-like machine with an in-kernel IOAPIC/LAPIC and an
/// ACPI PM block at 0x600 with a GPE0 block at 0x620 (events on the SCI, docs/acpi.md). The MADT lists MaxVcpus
/// processors: the present ones enabled, the rest "online capable" (ACPI 6.3), which reserves them for hot-add; the
/// DSDT has a processor object for each (<see cref="CpuHotplugAcpi"/>).
/// </summary>
public static class AcpiTables
{
    public const ulong RsdpAddress = MemoryLayout.AcpiStart;

    // FADT flags
    private const uint WBINVD = 1 << 0, PROC_C1 = 1 << 2, SLP_BUTTON = 1 << 5, RESET_REG_SUP = 1 << 10;

    /// <summary>Builds every table, places them from <see cref="RsdpAddress"/> on, and returns (address, bytes) pairs.</summary>
    public static IReadOnlyList<(ulong Address, byte[] Bytes)> Build(AcpiConfig config)
    {
        if (config.VcpuCount < 1 || config.VcpuCount > config.MaxVcpus || config.MaxVcpus > CpuHotplugAcpi.MaxProcessors)
            throw new ArgumentOutOfRangeException(nameof(config), $"vCPU count {config.VcpuCount} / maximum {config.MaxVcpus} out of range (1 ≤ count ≤ maximum ≤ {CpuHotplugAcpi.MaxProcessors}).");

        var placed = new List<(ulong, byte[])>();
        ulong next = RsdpAddress + 64;
        ulong Place(byte[] table)
        {
            ulong at = next;
            placed.Add((at, table));
            next = (next + (ulong)table.Length + 15) & ~15UL;
            if (next > MemoryLayout.AcpiEnd) throw new InvalidOperationException("ACPI tables do not fit in the ACPI area.");
            return at;
        }

        ulong dsdt = Place(BuildDsdt(config));
        ulong fadt = Place(BuildFadt(dsdt, config.Ps2Devices));
        ulong madt = Place(BuildMadt(config));
        var tables = new List<ulong> { fadt, madt };
        foreach (var extra in config.ExtraTables) tables.Add(Place(extra));

        var xsdt = new AcpiTableWriter("XSDT", 1);
        foreach (ulong t in tables) xsdt.U64(t);
        ulong xsdtAddress = Place(xsdt.Finish());
        var rsdt = new AcpiTableWriter("RSDT", 1);
        foreach (ulong t in tables) rsdt.U32((uint)t);
        ulong rsdtAddress = Place(rsdt.Finish());

        placed.Insert(0, (RsdpAddress, BuildRsdp((uint)rsdtAddress, xsdtAddress)));
        return placed;
    }

    public static void WriteTo(GuestMemory memory, AcpiConfig config)
    {
        foreach (var (address, bytes) in Build(config)) memory.Write(address, bytes);
    }

    internal static byte[] BuildRsdp(uint rsdt, ulong xsdt)
    {
        byte[] r = new byte[36];
        Encoding.ASCII.GetBytes("RSD PTR ").CopyTo(r, 0);
        Encoding.ASCII.GetBytes(AcpiTableWriter.OemId).CopyTo(r, 9);
        r[15] = 2; // ACPI 2.0+
        BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(16), rsdt);
        BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(20), 36);
        BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(24), xsdt);
        r[8] = AcpiTableWriter.Checksum(r.AsSpan(0, 20));
        r[32] = AcpiTableWriter.Checksum(r);
        return r;
    }

    internal static byte[] BuildDsdt(AcpiConfig config)
    {
        var w = new AcpiTableWriter("DSDT", 2);
        // Name (_S5, Package (4) { 5, 5, 0, 0 }): SLP_TYP 5 in PM1a_CNT powers off (see Acpi/AcpiPm). First: the
        // built-in guest looks for it without parsing the AML.
        w.Bytes([0x08, (byte)'_', (byte)'S', (byte)'5', (byte)'_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00]);
        w.Bytes(CpuHotplugAcpi.BuildDsdtAml(config.MaxVcpus)); // processor objects, CPU scan on GPE 2
        w.Bytes(config.ExtraDsdtAml);
        if (config.Ps2Devices) w.Bytes(Ps2DsdtAml());
        return w.Finish();
    }

    /// <summary>
    /// <c>Scope(\_SB) { Device(KBD) { _HID PNP0303, _CRS IO 0x60, IO 0x64, IRQ 1 } Device(MOU) { _HID PNP0F13, _CRS IRQ 12 } }</c>:
    /// SeaBIOS skips its PS/2 set-up without the keyboard object, Linux's i8042 finds the ports and IRQs here.
    /// </summary>
    internal static byte[] Ps2DsdtAml()
    {
        byte[] Irq(int irq) => [0x22, (byte)(1 << irq), (byte)((1 << irq) >> 8)]; // IRQNoFlags: a 16-bit mask
        var kbd = Aml.Device("KBD", Aml.Name("_HID", Aml.EisaId("PNP0303")),
            Aml.Name("_CRS", Aml.ResourceTemplate(Aml.IoPort(0x60, 1), Aml.IoPort(0x64, 1), Irq(1))));
        var mou = Aml.Device("MOU", Aml.Name("_HID", Aml.EisaId("PNP0F13")),
            Aml.Name("_CRS", Aml.ResourceTemplate(Irq(12))));
        return Aml.Scope("\\_SB", kbd, mou);
    }

    internal static byte[] BuildFadt(ulong dsdt, bool ps2Devices = false)
    {
        var w = new AcpiTableWriter("FACP", 6);
        w.U32(0);                      // 36 FIRMWARE_CTRL: no FACS
        w.U32((uint)dsdt);             // 40 DSDT
        w.U8(0);                       // 44 reserved
        w.U8(0);                       // 45 preferred PM profile: unspecified
        w.U16(MemoryLayout.SciIrq);    // 46 SCI_INT
        w.U32(0);                      // 48 SMI_CMD: 0 = ACPI mode is always on
        w.U8(0).U8(0).U8(0).U8(0);     // 52 ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT
        w.U32(MemoryLayout.Pm1aEventPort);   // 56 PM1a_EVT_BLK
        w.U32(0);                            // 60 PM1b_EVT_BLK
        w.U32(MemoryLayout.Pm1aControlPort); // 64 PM1a_CNT_BLK
        w.U32(0);                            // 68 PM1b_CNT_BLK
        w.U32(0);                            // 72 PM2_CNT_BLK
        w.U32(MemoryLayout.PmTimerPort);     // 76 PM_TMR_BLK
        w.U32(MemoryLayout.Gpe0Port).U32(0); // 80 GPE0_BLK, 84 GPE1_BLK
        w.U8(4).U8(2).U8(0).U8(4);           // 88 PM1_EVT_LEN, PM1_CNT_LEN, PM2_CNT_LEN, PM_TMR_LEN
        w.U8(AcpiPm.Gpe0BlockLength).U8(0).U8(0).U8(0); // 92 GPE0_BLK_LEN, GPE1_BLK_LEN, GPE1_BASE, CST_CNT
        w.U16(101).U16(1001);                // 96 P_LVL2_LAT, P_LVL3_LAT: > 100 / > 1000 = C2/C3 unsupported
        w.U16(0).U16(0);                     // 100 FLUSH_SIZE, FLUSH_STRIDE
        w.U8(0).U8(0).U8(0).U8(0).U8(0x32);  // 104 DUTY_OFFSET, DUTY_WIDTH, DAY_ALRM, MON_ALRM, CENTURY (CMOS 0x32)
        w.U16(ps2Devices ? (ushort)2 : (ushort)0); // 109 IAPC_BOOT_ARCH: bit 1 = an 8042 for the OS to probe (with a display only); VGA probe allowed
        w.U8(0);                             // 111 reserved
        w.U32(WBINVD | PROC_C1 | SLP_BUTTON | RESET_REG_SUP); // 112 flags
        w.Gas(1, 8, 0, 1, 0x64);             // 116 RESET_REG: i8042 command port
        w.U8(0xFE);                          // 128 RESET_VALUE: pulse reset line
        w.U16(0);                            // 129 ARM_BOOT_ARCH
        w.U8(3);                             // 131 FADT minor version (6.3)
        w.U64(0);                            // 132 X_FIRMWARE_CTRL
        w.U64(dsdt);                         // 140 X_DSDT
        w.Gas(1, 32, 0, 3, MemoryLayout.Pm1aEventPort);   // 148 X_PM1a_EVT_BLK
        w.Gas(0, 0, 0, 0, 0);                             // 160 X_PM1b_EVT_BLK
        w.Gas(1, 16, 0, 2, MemoryLayout.Pm1aControlPort); // 172 X_PM1a_CNT_BLK
        w.Gas(0, 0, 0, 0, 0);                             // 184 X_PM1b_CNT_BLK
        w.Gas(0, 0, 0, 0, 0);                             // 196 X_PM2_CNT_BLK
        w.Gas(1, 32, 0, 3, MemoryLayout.PmTimerPort);     // 208 X_PM_TMR_BLK
        w.Gas(1, AcpiPm.Gpe0BlockLength * 8, 0, 1, MemoryLayout.Gpe0Port); // 220 X_GPE0_BLK (byte registers)
        w.Gas(0, 0, 0, 0, 0);                             // 232 X_GPE1_BLK
        w.Gas(0, 0, 0, 0, 0).Gas(0, 0, 0, 0, 0);          // 244 SLEEP_CONTROL_REG, 256 SLEEP_STATUS_REG
        w.Ascii("KVMPSVMM", 8);                           // 268 hypervisor vendor identity
        return w.Finish();
    }

    internal static byte[] BuildMadt(AcpiConfig config)
    {
        var w = new AcpiTableWriter("APIC", 5);
        w.U32((uint)MemoryLayout.LocalApicAddress);
        w.U32(1); // PCAT_COMPAT: legacy 8259s are present
        for (int i = 0; i < config.MaxVcpus; i++)
        {
            uint flags = i < config.VcpuCount ? 1u : 2u; // Enabled, or Online Capable
            w.U8(0).U8(8).U8((byte)i).U8((byte)i).U32(flags);
        }
        w.U8(1).U8(12).U8((byte)config.MaxVcpus).U8(0).U32((uint)MemoryLayout.IoApicAddress).U32(0); // IOAPIC
        w.U8(2).U8(10).U8(0).U8(0).U32(2).U16(0);   // ISO: ISA IRQ0 -> GSI2
        w.U8(2).U8(10).U8(0).U8(MemoryLayout.SciIrq).U32(MemoryLayout.SciIrq).U16(0x000D); // ISO: SCI, active high, level
        w.U8(4).U8(6).U8(0xFF).U16(0).U8(1);        // Local APIC NMI on LINT1 for all processors
        return w.Finish();
    }
}
