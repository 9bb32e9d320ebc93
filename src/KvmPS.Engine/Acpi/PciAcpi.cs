using System.Buffers.Binary;
using System.Text;
using KvmPS.Devices.Pci;

namespace KvmPS.Acpi;

/// <summary>The ACPI description of the PCI host bridge: DSDT objects (host bridge device with _CRS and _PRT, ECAM reservation) and MCFG.</summary>
public static class PciAcpi
{
    /// <summary>
    /// DSDT body: <c>Scope(\_SB) { Device(PCI0) { _HID PNP0A08, _CID PNP0A03, _UID 0, _SEG 0, _BBN 0, _CRS, _PRT }
    /// Device(MRES) { _HID PNP0C02, _CRS = ECAM } }</c>. _PRT maps every (slot, pin) to its IOAPIC GSI (<see cref="PciBus.IntxGsi"/>),
    /// GSI form (source Zero): level-triggered, active-low by the ACPI default for PCI.
    /// </summary>
    public static byte[] BuildDsdtAml(PciWindows w)
    {
        var prt = new List<byte[]>();
        for (int slot = 1; slot < PciBus.SlotCount; slot++)
            for (int pin = 1; pin <= 4; pin++)
                prt.Add(Aml.Package(Aml.Integer(((ulong)slot << 16) | 0xFFFF), Aml.Integer((ulong)(pin - 1)), Aml.Integer(0), Aml.Integer(PciBus.IntxGsi(slot, pin))));

        var crs = new List<byte[]>
        {
            Aml.WordAddressSpace(2, 0, w.EcamLastBus),             // bus numbers
            Aml.IoPort(PciBus.ConfigAddressPort, PciBus.ConfigPortCount),
            Aml.WordAddressSpace(1, 0x0000, 0x0CF7, 0x03),         // I/O below and above the config ports (ISA + non-ISA ranges)
            Aml.WordAddressSpace(1, 0x0D00, 0xFFFF, 0x03),
            Aml.DWordMemory((uint)w.Mmio32Base, (uint)(w.Mmio32End - 1)),
        };
        if (w.Mmio64Size > 0) crs.Add(Aml.QWordMemory(w.Mmio64Base, w.Mmio64End - 1));

        var pci0 = Aml.Device("PCI0",
            Aml.Name("_HID", Aml.EisaId("PNP0A08")),
            Aml.Name("_CID", Aml.EisaId("PNP0A03")),
            Aml.Name("_UID", Aml.Integer(0)),
            Aml.Name("_SEG", Aml.Integer(0)),
            Aml.Name("_BBN", Aml.Integer(0)),
            Aml.Name("_CRS", Aml.ResourceTemplate(crs.ToArray())),
            Aml.Name("_PRT", PackageOf(prt)));
        var mres = Aml.Device("MRES",
            Aml.Name("_HID", Aml.EisaId("PNP0C02")),
            Aml.Name("_UID", Aml.Integer(1)),
            Aml.Name("_CRS", Aml.ResourceTemplate(Aml.Memory32Fixed((uint)w.EcamBase, (uint)w.EcamSize))));
        return Aml.Scope("\\_SB", pci0, mres);
    }

    /// <summary>Package with more than 255 elements uses VarPackage; 124 entries fit a plain Package.</summary>
    private static byte[] PackageOf(List<byte[]> elements) => Aml.Package(elements.ToArray());

    /// <summary>MCFG (PCI Firmware Specification 3.0): one allocation for segment 0, buses 0..last.</summary>
    public static byte[] BuildMcfg(PciWindows w)
    {
        var t = new List<byte>();
        t.AddRange(Encoding.ASCII.GetBytes("MCFG"));
        t.AddRange(new byte[4]);           // length, patched below
        t.Add(1);                          // revision
        t.Add(0);                          // checksum
        t.AddRange(Encoding.ASCII.GetBytes("KVMPS "));
        t.AddRange(Encoding.ASCII.GetBytes("KVMPSVMM"));
        t.AddRange(BitConverter.GetBytes(1u));
        t.AddRange(Encoding.ASCII.GetBytes("KVPS"));
        t.AddRange(BitConverter.GetBytes(1u));
        t.AddRange(new byte[8]);           // reserved
        t.AddRange(BitConverter.GetBytes(w.EcamBase));
        t.AddRange(BitConverter.GetBytes((ushort)0)); // segment group
        t.Add(0);                          // start bus
        t.Add(w.EcamLastBus);              // end bus
        t.AddRange(new byte[4]);
        byte[] table = t.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(4), (uint)table.Length);
        byte sum = 0;
        foreach (byte b in table) sum += b;
        table[9] = (byte)(0 - sum);
        return table;
    }
}
