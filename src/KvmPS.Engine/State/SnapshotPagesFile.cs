using System.Buffers.Binary;
using System.IO.Hashing;
using KvmPS.Vm;

namespace KvmPS.State;

/// <summary>What a diff snapshot's pages.bin says: which pages its memory.bin holds, and which parent it was taken on.</summary>
public sealed record SnapshotPages(GuestPageBitmap Pages, ulong ParentStateCrc);

/// <summary>
/// pages.bin of a diff snapshot (docs/snapshots.md): magic "KVMPSPGS", u32 format version, u32 reserved (0), u64 page
/// count, u64 the parent's state.bin CRC-64 (its last 8 bytes), the page bitmap as u64 words (bit i of word w = page
/// 64·w + i of memory.bin), then a CRC-64/ECMA-182 of everything before it. All integers little-endian. A page in
/// the bitmap is in the diff even where memory.bin has a hole there (then it was all zero): "not in this diff" and
/// "zero now" differ.
/// </summary>
public static class SnapshotPagesFile
{
    public const string FileName = "pages.bin";
    public static ReadOnlySpan<byte> Magic => "KVMPSPGS"u8;
    public const uint FormatVersion = 1;
    private const int HeaderBytes = 32, CrcBytes = 8;

    public static byte[] Encode(SnapshotPages pages)
    {
        var words = pages.Pages.Words;
        var bytes = new byte[HeaderBytes + words.Length * 8 + CrcBytes];
        Magic.CopyTo(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), FormatVersion);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(16), pages.Pages.PageCount);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(24), pages.ParentStateCrc);
        for (int i = 0; i < words.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(HeaderBytes + i * 8), words[i]);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(bytes.Length - CrcBytes), Crc64.HashToUInt64(bytes.AsSpan(0, bytes.Length - CrcBytes)));
        return bytes;
    }

    /// <summary>Checks magic, version, CRC and size; any problem is a <see cref="SnapshotException"/> naming <paramref name="path"/>.</summary>
    public static SnapshotPages Decode(ReadOnlySpan<byte> data, string path)
    {
        if (data.Length < Magic.Length || !data[..Magic.Length].SequenceEqual(Magic))
            throw new SnapshotException(path, "not a KvmPS diff page list (no KVMPSPGS magic)");
        if (data.Length < HeaderBytes + CrcBytes) throw new SnapshotException(path, $"the page list is truncated ({data.Length} bytes)");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(data[8..]);
        if (version > FormatVersion) throw new SnapshotException(path, $"page list format version {version} is newer than this build reads (version {FormatVersion})");
        if (version == 0) throw new SnapshotException(path, "page list format version 0 is not valid");
        if (Crc64.HashToUInt64(data[..^CrcBytes]) != BinaryPrimitives.ReadUInt64LittleEndian(data[^CrcBytes..]))
            throw new SnapshotException(path, "the page list is corrupt or truncated (CRC-64 mismatch)");
        ulong pageCount = BinaryPrimitives.ReadUInt64LittleEndian(data[16..]);
        ulong parentCrc = BinaryPrimitives.ReadUInt64LittleEndian(data[24..]);
        if (pageCount > (1UL << 40) / MemoryLayout.PageSize) throw new SnapshotException(path, $"the page list claims {pageCount} pages");
        int words = GuestPageBitmap.WordsFor(pageCount);
        if (data.Length != HeaderBytes + words * 8 + CrcBytes)
            throw new SnapshotException(path, $"the page list has {data.Length} bytes, {HeaderBytes + words * 8 + CrcBytes} expected for {pageCount} pages");
        var bits = new ulong[words];
        for (int i = 0; i < words; i++) bits[i] = BinaryPrimitives.ReadUInt64LittleEndian(data[(HeaderBytes + i * 8)..]);
        try { return new SnapshotPages(new GuestPageBitmap(pageCount, bits), parentCrc); }
        catch (ArgumentException e) { throw new SnapshotException(path, $"the page list is invalid: {e.Message}"); }
    }
}
