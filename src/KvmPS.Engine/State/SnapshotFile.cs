using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace KvmPS.State;

/// <summary>A snapshot that cannot be written or read; <see cref="Path"/> names the file or directory at fault.</summary>
public sealed class SnapshotException(string path, string problem, Exception? inner = null)
    : Exception($"{path}: {problem}", inner)
{
    public string Path { get; } = path;
    public string Problem { get; } = problem;
}

/// <summary>One named, versioned state record of a snapshot (a vCPU, the in-kernel irqchip, a device).</summary>
public sealed record StateRecord(string Name, ushort Version, byte[] Data);

/// <summary>
/// state.bin (docs/snapshots.md): magic "KVMPSSNP", u32 format version, u32 record count, the records (u16 name
/// length, UTF-8 name, u16 record version, u32 data length, data), then a CRC-64/ECMA-182 of everything before it.
/// All integers little-endian.
/// </summary>
public static class SnapshotStateFile
{
    public static ReadOnlySpan<byte> Magic => "KVMPSSNP"u8;
    public const uint FormatVersion = 1;
    private const int HeaderBytes = 16, CrcBytes = 8, MaxRecords = 65536, MaxNameBytes = 256;

    public static byte[] Encode(IReadOnlyList<StateRecord> records)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        var stream = new MemoryStream();
        Span<byte> scratch = stackalloc byte[8];
        stream.Write(Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(scratch, FormatVersion); stream.Write(scratch[..4]);
        BinaryPrimitives.WriteUInt32LittleEndian(scratch, (uint)records.Count); stream.Write(scratch[..4]);
        foreach (var r in records)
        {
            if (!names.Add(r.Name)) throw new InvalidOperationException($"two state records are named '{r.Name}'");
            byte[] name = Encoding.UTF8.GetBytes(r.Name);
            if (name.Length is 0 or > MaxNameBytes) throw new InvalidOperationException($"state record name '{r.Name}' must have 1-{MaxNameBytes} bytes");
            BinaryPrimitives.WriteUInt16LittleEndian(scratch, (ushort)name.Length); stream.Write(scratch[..2]);
            stream.Write(name);
            BinaryPrimitives.WriteUInt16LittleEndian(scratch, r.Version); stream.Write(scratch[..2]);
            BinaryPrimitives.WriteUInt32LittleEndian(scratch, (uint)r.Data.Length); stream.Write(scratch[..4]);
            stream.Write(r.Data);
        }
        BinaryPrimitives.WriteUInt64LittleEndian(scratch, Crc64.HashToUInt64(stream.GetBuffer().AsSpan(0, (int)stream.Length)));
        stream.Write(scratch);
        return stream.ToArray();
    }

    /// <summary>Checks magic, version and CRC, then splits the records; any problem is a <see cref="SnapshotException"/> naming <paramref name="path"/>.</summary>
    public static IReadOnlyList<StateRecord> Decode(ReadOnlySpan<byte> data, string path)
    {
        if (data.Length < Magic.Length || !data[..Magic.Length].SequenceEqual(Magic))
            throw new SnapshotException(path, "not a KvmPS snapshot state file (no KVMPSSNP magic)");
        if (data.Length < HeaderBytes + CrcBytes) throw new SnapshotException(path, $"the state file is truncated ({data.Length} bytes)");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(data[8..]);
        if (version > FormatVersion)
            throw new SnapshotException(path, $"snapshot format version {version} is newer than this build reads (version {FormatVersion}); restore it with a newer kvmps-vmm");
        if (version == 0) throw new SnapshotException(path, "snapshot format version 0 is not valid");
        var body = data[..^CrcBytes];
        ulong stored = BinaryPrimitives.ReadUInt64LittleEndian(data[^CrcBytes..]);
        if (Crc64.HashToUInt64(body) != stored) throw new SnapshotException(path, "the state file is corrupt or truncated (CRC-64 mismatch)");

        uint count = BinaryPrimitives.ReadUInt32LittleEndian(data[12..]);
        if (count > MaxRecords) throw new SnapshotException(path, $"{count} state records exceed the limit of {MaxRecords}");
        var records = new List<StateRecord>((int)count);
        var names = new HashSet<string>(StringComparer.Ordinal);
        int at = HeaderBytes;
        for (uint i = 0; i < count; i++)
        {
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(Take(body, 2, ref at, path, i));
            if (nameLength is 0 or > MaxNameBytes) throw new SnapshotException(path, $"state record {i} has a name of {nameLength} bytes");
            string name;
            try { name = new UTF8Encoding(false, true).GetString(Take(body, nameLength, ref at, path, i)); }
            catch (DecoderFallbackException) { throw new SnapshotException(path, $"state record {i} has a name that is not UTF-8"); }
            ushort recordVersion = BinaryPrimitives.ReadUInt16LittleEndian(Take(body, 2, ref at, path, i));
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(Take(body, 4, ref at, path, i));
            if (length > int.MaxValue) throw new SnapshotException(path, $"state record '{name}' claims {length} bytes");
            byte[] bytes = Take(body, (int)length, ref at, path, i).ToArray();
            if (!names.Add(name)) throw new SnapshotException(path, $"state record '{name}' appears twice");
            records.Add(new StateRecord(name, recordVersion, bytes));
        }
        if (at != body.Length) throw new SnapshotException(path, $"{body.Length - at} bytes follow the last state record");
        return records;
    }

    private static ReadOnlySpan<byte> Take(ReadOnlySpan<byte> body, int n, ref int position, string path, uint record)
    {
        if (n < 0 || n > body.Length - position) throw new SnapshotException(path, $"state record {record} runs past the end of the file");
        var s = body.Slice(position, n);
        position += n;
        return s;
    }
}
