using System.Buffers.Binary;
using System.Text;

namespace KvmPS.State;

/// <summary>
/// Writes a state record: little-endian fixed-size values, length-prefixed byte strings and UTF-8 text, nothing
/// else. The same state always gives the same bytes, so a save → restore → save round trip can be compared bytewise.
/// </summary>
public sealed class StateWriter
{
    private readonly MemoryStream _stream = new();
    private readonly byte[] _scratch = new byte[8];

    public void WriteBool(bool value) => WriteByte(value ? (byte)1 : (byte)0);
    public void WriteByte(byte value) => _stream.WriteByte(value);

    public void WriteUInt16(ushort value) { BinaryPrimitives.WriteUInt16LittleEndian(_scratch, value); _stream.Write(_scratch, 0, 2); }
    public void WriteUInt32(uint value) { BinaryPrimitives.WriteUInt32LittleEndian(_scratch, value); _stream.Write(_scratch, 0, 4); }
    public void WriteUInt64(ulong value) { BinaryPrimitives.WriteUInt64LittleEndian(_scratch, value); _stream.Write(_scratch, 0, 8); }
    public void WriteInt32(int value) => WriteUInt32(unchecked((uint)value));
    public void WriteInt64(long value) => WriteUInt64(unchecked((ulong)value));

    /// <summary>A byte string with its length (u32) in front.</summary>
    public void WriteBytes(ReadOnlySpan<byte> value)
    {
        WriteUInt32((uint)value.Length);
        _stream.Write(value);
    }

    /// <summary>Exactly <paramref name="value"/>'s bytes, no length: for fixed-size blobs (a kernel struct) whose size the reader knows.</summary>
    public void WriteFixed(ReadOnlySpan<byte> value) => _stream.Write(value);

    public void WriteString(string value) => WriteBytes(Encoding.UTF8.GetBytes(value));

    public int Length => (int)_stream.Length;
    public byte[] ToArray() => _stream.ToArray();
}
