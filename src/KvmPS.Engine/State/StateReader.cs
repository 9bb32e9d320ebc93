using System.Buffers.Binary;
using System.Text;

namespace KvmPS.State;

/// <summary>
/// Reads a record written by <see cref="StateWriter"/>. Snapshot files come from disk and may be truncated or
/// hostile: every read is bounds-checked and fails with a <see cref="StateFormatException"/> naming the record.
/// </summary>
public sealed class StateReader
{
    private readonly ReadOnlyMemory<byte> _data;
    private int _position;

    public StateReader(ReadOnlyMemory<byte> data, string recordName)
    {
        _data = data;
        RecordName = recordName;
    }

    /// <summary>The record being read, for error messages.</summary>
    public string RecordName { get; }
    public int Remaining => _data.Length - _position;

    public bool ReadBool() => ReadByte() switch
    {
        0 => false,
        1 => true,
        var b => throw Fail($"a boolean field holds {b}"),
    };

    public byte ReadByte() => Take(1)[0];
    public ushort ReadUInt16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));
    public uint ReadUInt32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));
    public ulong ReadUInt64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));
    public int ReadInt32() => unchecked((int)ReadUInt32());
    public long ReadInt64() => unchecked((long)ReadUInt64());

    /// <summary>A length-prefixed byte string of at most <paramref name="maxLength"/> bytes.</summary>
    public byte[] ReadBytes(int maxLength)
    {
        uint length = ReadUInt32();
        if (length > (uint)maxLength) throw Fail($"a field of {length} bytes exceeds its limit of {maxLength}");
        return Take((int)length).ToArray();
    }

    /// <summary>Exactly <paramref name="destination"/>.Length bytes (a blob written with <see cref="StateWriter.WriteFixed"/>).</summary>
    public void ReadFixed(Span<byte> destination) => Take(destination.Length).CopyTo(destination);

    public string ReadString(int maxBytes = 4096)
    {
        try { return new UTF8Encoding(false, true).GetString(ReadBytes(maxBytes)); }
        catch (DecoderFallbackException) { throw Fail("a text field is not valid UTF-8"); }
    }

    /// <summary>Call after the last field: bytes left over mean the record does not match what this build knows.</summary>
    public void EnsureEnd()
    {
        if (Remaining != 0) throw Fail($"{Remaining} unexpected bytes after the last field");
    }

    /// <summary>An error about this record, for checks a device makes on the values it read.</summary>
    public StateFormatException Fail(string problem) => new(RecordName, problem);

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || count > Remaining) throw Fail($"the record ends early (needs {count} more bytes at offset {_position}, has {Remaining})");
        var span = _data.Span.Slice(_position, count);
        _position += count;
        return span;
    }
}

/// <summary>A state record that cannot be restored: truncated, corrupt, or of a version this build does not know.</summary>
public sealed class StateFormatException(string recordName, string problem)
    : Exception($"State record '{recordName}' cannot be restored: {problem}.")
{
    public string RecordName { get; } = recordName;
    public string Problem { get; } = problem;
}
