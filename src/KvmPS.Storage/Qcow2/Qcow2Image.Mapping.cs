using System.Buffers.Binary;
using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

// The L1 and L2 tables: lookup, cache, write-through updates, copy-on-write of shared L2 tables.
public sealed partial class Qcow2Image
{
    private ulong GetL2Entry(long guestCluster)
    {
        long l1Index = guestCluster / _l2Entries;
        if (l1Index >= _l1.Length)
        {
            return 0;
        }
        long l2Offset = (long)(_l1[l1Index] & L1E_OFFSET_MASK);
        if (l2Offset == 0)
        {
            return 0;
        }
        return LoadL2(l2Offset)[guestCluster % _l2Entries];
    }

    /// <summary>Returns an L2 table for <paramref name="l1Index"/> that may be modified in place.</summary>
    private long GetWritableL2(long l1Index)
    {
        ulong l1Entry = _l1[l1Index];
        long oldOffset = (long)(l1Entry & L1E_OFFSET_MASK);
        if (oldOffset != 0 && (l1Entry & QCOW_OFLAG_COPIED) != 0)
        {
            return oldOffset;
        }
        ulong[] table = oldOffset != 0 ? (ulong[])LoadL2(oldOffset).Clone() : new ulong[_l2Entries];
        long newOffset = _refcounts!.Allocate(1);
        _file.Write(newOffset, SerializeTable(table, _clusterSize));
        CacheL2(newOffset, table);
        Barrier(); // table contents durable before the L1 entry points at them
        SetL1Entry(l1Index, (ulong)newOffset | QCOW_OFLAG_COPIED);
        if (oldOffset != 0)
        {
            // The old table stays referenced by snapshots; the data clusters' refcounts are unchanged
            // because they count L1 tables reaching them, not L2 tables.
            Barrier();
            _refcounts.Adjust(oldOffset >> _clusterBits, -1);
        }
        return newOffset;
    }

    private ulong[] LoadL2(long offset)
    {
        if (_l2Cache.TryGetValue(offset, out var table))
        {
            return table;
        }
        if ((offset & (_clusterSize - 1)) != 0 || offset + _clusterSize > _file.LengthBytes)
        {
            throw new ImageCorruptException(Path,
                $"qcow2 image '{Path}': L2 table at offset {offset} is misaligned or extends beyond the end of the file ({_file.LengthBytes} bytes).", (ulong)offset);
        }
        _file.Read(offset, _clusterBuffer);
        table = new ulong[_l2Entries];
        for (int i = 0; i < table.Length; i++)
        {
            table[i] = BinaryPrimitives.ReadUInt64BigEndian(_clusterBuffer.AsSpan(i * 8));
        }
        CacheL2(offset, table);
        return table;
    }

    private void CacheL2(long offset, ulong[] table)
    {
        if (_l2Cache.Count >= MaxCachedL2Tables && !_l2Cache.ContainsKey(offset))
        {
            _l2Cache.Clear(); // write-through cache: nothing to flush
        }
        _l2Cache[offset] = table;
    }

    private void SetL2Entry(long l2Offset, long index, ulong value)
    {
        LoadL2(l2Offset)[index] = value;
        Span<byte> be = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(be, value);
        _file.Write(l2Offset + index * 8, be);
    }

    private void SetL1Entry(long index, ulong value)
    {
        _l1[index] = value;
        Span<byte> be = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(be, value);
        _file.Write((long)_header.L1TableOffset + index * 8, be);
    }

    private ulong[] ReadL1Table(ulong offset, uint entries, string what)
    {
        var raw = new byte[(long)entries * 8];
        if (entries > 0)
        {
            _file.Read((long)offset, raw);
        }
        var table = new ulong[entries];
        for (int i = 0; i < table.Length; i++)
        {
            ulong e = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
            ulong l2 = e & L1E_OFFSET_MASK;
            if ((e & L1E_RESERVED_MASK) != 0 || (l2 != 0 && l2 + (ulong)_clusterSize > (ulong)_file.LengthBytes))
            {
                throw new ImageCorruptException(Path,
                    $"qcow2 image '{Path}': {what} entry {i} (0x{e:x16}) has reserved bits set or points beyond the end of the file ({_file.LengthBytes} bytes).",
                    offset + (ulong)i * 8);
            }
            table[i] = e;
        }
        return table;
    }

    private static byte[] SerializeTable(ulong[] table, long paddedLengthBytes)
    {
        var raw = new byte[paddedLengthBytes];
        for (int i = 0; i < table.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), table[i]);
        }
        return raw;
    }

    private long ClustersFor(long bytes) => (bytes + _clusterSize - 1) >> _clusterBits;
}
