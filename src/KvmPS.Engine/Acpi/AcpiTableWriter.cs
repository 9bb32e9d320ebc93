using System.Buffers.Binary;
using System.Text;

namespace KvmPS.Acpi;

/// <summary>Builds one ACPI table: standard 36-byte header, little-endian body, checksum fixed up on completion.</summary>
internal sealed class AcpiTableWriter
{
    public const string OemId = "KVMPS ";
    public const string OemTableId = "KVMPSVMM";
    private readonly List<byte> _bytes = new();

    public AcpiTableWriter(string signature, byte revision)
    {
        Ascii(signature, 4);
        U32(0); // length, patched in Finish
        U8(revision);
        U8(0); // checksum
        Ascii(OemId, 6);
        Ascii(OemTableId, 8);
        U32(1); // OEM revision
        Ascii("KVPS", 4); // creator ID
        U32(1); // creator revision
    }

    public int Length => _bytes.Count;
    public AcpiTableWriter U8(byte v) { _bytes.Add(v); return this; }
    public AcpiTableWriter U16(ushort v) { U8((byte)v); U8((byte)(v >> 8)); return this; }
    public AcpiTableWriter U32(uint v) { U16((ushort)v); U16((ushort)(v >> 16)); return this; }
    public AcpiTableWriter U64(ulong v) { U32((uint)v); U32((uint)(v >> 32)); return this; }
    public AcpiTableWriter Bytes(ReadOnlySpan<byte> v) { foreach (byte b in v) _bytes.Add(b); return this; }
    public AcpiTableWriter Zeros(int n) { for (int i = 0; i < n; i++) _bytes.Add(0); return this; }
    public AcpiTableWriter Ascii(string s, int width) { var b = Encoding.ASCII.GetBytes(s.PadRight(width)[..width]); return Bytes(b); }

    /// <summary>Generic Address Structure (12 bytes).</summary>
    public AcpiTableWriter Gas(byte addressSpace, byte bitWidth, byte bitOffset, byte accessSize, ulong address)
        => U8(addressSpace).U8(bitWidth).U8(bitOffset).U8(accessSize).U64(address);

    public byte[] Finish()
    {
        byte[] table = _bytes.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(4), (uint)table.Length);
        table[9] = Checksum(table);
        return table;
    }

    /// <summary>The byte that makes the sum of <paramref name="data"/> zero (with the checksum byte itself zero).</summary>
    public static byte Checksum(ReadOnlySpan<byte> data)
    {
        byte sum = 0;
        foreach (byte b in data) sum += b;
        return (byte)(0 - sum);
    }
}
