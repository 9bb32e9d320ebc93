using System.Buffers.Binary;
using System.Text;
using KvmPS.Devices.Pci;

namespace KvmPS.Acpi;

/// <summary>
/// A minimal AML encoder (ACPI 6.x, section 20) for the few objects the PCI description needs: Scope, Device,
/// Name, Package, integers, strings, EISA IDs and resource-template buffers. Every method returns the encoded bytes.
/// </summary>
public static class Aml
{
    private const byte ZeroOp = 0x00, OneOp = 0x01, OnesOp = 0xFF, BytePrefix = 0x0A, WordPrefix = 0x0B, DWordPrefix = 0x0C,
        StringPrefix = 0x0D, QWordPrefix = 0x0E, NameOp = 0x08, ScopeOp = 0x10, BufferOp = 0x11, PackageOp = 0x12,
        ExtOpPrefix = 0x5B, DeviceOp = 0x82, RootChar = 0x5C;

    /// <summary>PkgLength: 1 byte up to 63, else a lead byte with the count of following bytes (the length includes itself).</summary>
    public static byte[] PkgLength(int contentLength)
    {
        for (int n = 1; n <= 4; n++)
        {
            int total = contentLength + n;
            if (n == 1 && total < 0x40) return [(byte)total];
            if (n > 1 && total < 1 << (4 + 8 * (n - 1)))
            {
                var b = new byte[n];
                b[0] = (byte)(((n - 1) << 6) | (total & 0xF));
                for (int i = 1; i < n; i++) b[i] = (byte)(total >> (4 + 8 * (i - 1)));
                return b;
            }
        }
        throw new ArgumentOutOfRangeException(nameof(contentLength));
    }

    /// <summary>A NameString: an optional leading backslash, then one 4-character segment (padded with '_') or a dual/multi path.</summary>
    public static byte[] NameString(string name)
    {
        var o = new List<byte>();
        if (name.StartsWith('\\')) { o.Add(RootChar); name = name[1..]; }
        var segs = name.Split('.', StringSplitOptions.RemoveEmptyEntries);
        if (segs.Length == 0) { o.Add(0); return o.ToArray(); }
        if (segs.Length == 2) o.Add(0x2E);
        else if (segs.Length > 2) { o.Add(0x2F); o.Add((byte)segs.Length); }
        foreach (var s in segs)
        {
            if (s.Length > 4 || s.Length == 0) throw new ArgumentException($"AML name segment '{s}' must be 1-4 characters.");
            o.AddRange(Encoding.ASCII.GetBytes(s.PadRight(4, '_')));
        }
        return o.ToArray();
    }

    public static byte[] Integer(ulong v) => v switch
    {
        0 => [ZeroOp],
        1 => [OneOp],
        ulong.MaxValue => [OnesOp],
        <= 0xFF => [BytePrefix, (byte)v],
        <= 0xFFFF => [WordPrefix, (byte)v, (byte)(v >> 8)],
        <= 0xFFFF_FFFF => [DWordPrefix, .. LE32((uint)v)],
        _ => [QWordPrefix, .. LE32((uint)v), .. LE32((uint)(v >> 32))],
    };

    public static byte[] String(string s) => [StringPrefix, .. Encoding.ASCII.GetBytes(s), 0];

    /// <summary>EISAID("PNP0A03") as a DWord integer: three 5-bit letters then four hex digits, big-endian in the 32-bit value's byte order.</summary>
    public static byte[] EisaId(string id)
    {
        if (id.Length != 7) throw new ArgumentException("an EISA ID has 7 characters", nameof(id));
        int letters = ((id[0] - 0x40) << 10) | ((id[1] - 0x40) << 5) | (id[2] - 0x40);
        int digits = Convert.ToInt32(id[3..], 16);
        return [DWordPrefix, (byte)(letters >> 8), (byte)letters, (byte)(digits >> 8), (byte)digits];
    }

    public static byte[] Name(string name, byte[] value) => [NameOp, .. NameString(name), .. value];

    public static byte[] Package(params byte[][] elements)
    {
        byte[] body = [(byte)elements.Length, .. elements.SelectMany(e => e)];
        if (elements.Length > 255) throw new ArgumentOutOfRangeException(nameof(elements));
        return [PackageOp, .. PkgLength(body.Length), .. body];
    }

    public static byte[] Scope(string name, params byte[][] terms)
    {
        byte[] body = [.. NameString(name), .. terms.SelectMany(t => t)];
        return [ScopeOp, .. PkgLength(body.Length), .. body];
    }

    public static byte[] Device(string name, params byte[][] terms)
    {
        byte[] body = [.. NameString(name), .. terms.SelectMany(t => t)];
        return [ExtOpPrefix, DeviceOp, .. PkgLength(body.Length), .. body];
    }

    /// <summary>Buffer() holding a resource template: the descriptors followed by an End Tag (checksum 0).</summary>
    public static byte[] ResourceTemplate(params byte[][] descriptors)
    {
        byte[] data = [.. descriptors.SelectMany(d => d), 0x79, 0x00];
        byte[] body = [.. Integer((ulong)data.Length), .. data];
        return [BufferOp, .. PkgLength(body.Length), .. body];
    }

    /// <summary>Word Address Space Descriptor; resourceType 1 = I/O range, 2 = bus number range. Min and max fixed, producer.</summary>
    public static byte[] WordAddressSpace(byte resourceType, ushort min, ushort max, byte typeFlags = 0)
    {
        ushort len = (ushort)(max - min + 1);
        return [0x88, 0x0D, 0x00, resourceType, 0x0C, typeFlags, .. LE16(0), .. LE16(min), .. LE16(max), .. LE16(0), .. LE16(len)];
    }

    /// <summary>DWord memory range (min/max fixed, producer, read-write, non-cacheable).</summary>
    public static byte[] DWordMemory(uint min, uint max)
        => [0x87, 0x17, 0x00, 0x00, 0x0C, 0x01, .. LE32(0), .. LE32(min), .. LE32(max), .. LE32(0), .. LE32(max - min + 1)];

    /// <summary>QWord memory range (min/max fixed, producer, read-write, cacheable + prefetchable).</summary>
    public static byte[] QWordMemory(ulong min, ulong max)
        => [0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x07, .. LE64(0), .. LE64(min), .. LE64(max), .. LE64(0), .. LE64(max - min + 1)];

    /// <summary>I/O Port Descriptor with 16-bit decode, fixed base.</summary>
    public static byte[] IoPort(ushort port, byte length) => [0x47, 0x01, .. LE16(port), .. LE16(port), 0x01, length];

    /// <summary>32-bit fixed memory range, read-write.</summary>
    public static byte[] Memory32Fixed(uint baseAddress, uint length) => [0x86, 0x09, 0x00, 0x01, .. LE32(baseAddress), .. LE32(length)];

    private static byte[] LE16(ushort v) => [(byte)v, (byte)(v >> 8)];
    private static byte[] LE32(uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); return b; }
    private static byte[] LE64(ulong v) { var b = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); return b; }
}

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
