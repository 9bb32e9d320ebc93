using System.Buffers.Binary;
using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

/// <summary>
/// The refcount table and refcount blocks, plus the cluster allocator built on them.
/// Every update is written through to the file immediately, so the on-disk state is always the
/// in-memory state; callers order their writes (refcount before reference, reference removal
/// before refcount decrement) so that a crash can only leak clusters.
/// Not thread-safe: the owning <see cref="Qcow2Image"/> serialises access.
/// </summary>
internal sealed class Qcow2Refcounts
{
    private const int MaxCachedBlocks = 64;

    private readonly ImageFile _file;
    private readonly int _clusterBits;
    private readonly long _clusterSize;
    private readonly int _refcountBits;
    private readonly long _entriesPerBlock;
    private readonly ulong _maxRefcount;
    private readonly Action _barrier;
    private readonly Action<long> _onClusterFreed;
    private readonly Dictionary<long, byte[]> _blockCache = new();
    private readonly HashSet<long> _reserved = new();

    // Refcount blocks changed in memory but not yet written (deferred mode only).
    private readonly HashSet<long> _dirtyBlocks = new();
    private bool _deferWrites;

    private ulong[] _table;
    private long _tableOffset;
    private long _tableClusters;
    private long _freeClusterHint = 1;

    // One past the highest cluster this process allocated; allocations may lie beyond the end of
    // the file until their contents are written, so the file length alone is not a safe bound.
    private long _highWaterCluster;

    // Clusters handed out by an allocation still in progress; refcount-block allocation skips them.
    private long _inFlightStart;
    private long _inFlightCount;

    public Qcow2Refcounts(ImageFile file, Qcow2Header header, Action barrier, Action<long> onClusterFreed)
    {
        _file = file;
        _clusterBits = header.ClusterBits;
        _clusterSize = header.ClusterSizeBytes;
        _refcountBits = 1 << header.RefcountOrder;
        _entriesPerBlock = _clusterSize * 8 / _refcountBits;
        _maxRefcount = _refcountBits == 64 ? ulong.MaxValue : (1UL << _refcountBits) - 1;
        _barrier = barrier;
        _onClusterFreed = onClusterFreed;
        _tableOffset = (long)header.RefcountTableOffset;
        _tableClusters = header.RefcountTableClusters;

        var raw = new byte[_tableClusters * _clusterSize];
        _file.Read(_tableOffset, raw);
        _table = new ulong[raw.Length / 8];
        long fileLength = _file.LengthBytes;
        for (int i = 0; i < _table.Length; i++)
        {
            ulong e = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
            ulong block = e & REFT_OFFSET_MASK;
            if ((e & ~REFT_OFFSET_MASK) != 0 || block % (ulong)_clusterSize != 0 || (block != 0 && block + (ulong)_clusterSize > (ulong)fileLength))
            {
                throw new ImageCorruptException(_file.Path,
                    $"qcow2 image '{_file.Path}': refcount table entry {i} (0x{e:x16}) is misaligned or points beyond the end of the file ({fileLength} bytes).",
                    (ulong)_tableOffset + (ulong)i * 8);
            }
            _table[i] = block;
        }
    }

    public long TableOffset => _tableOffset;

    public long TableClusters => _tableClusters;

    public ulong MaxRefcount => _maxRefcount;

    /// <summary>File offsets of the existing refcount blocks.</summary>
    public IEnumerable<long> BlockOffsets()
    {
        foreach (ulong block in _table)
        {
            if (block != 0)
            {
                yield return (long)block;
            }
        }
    }

    /// <summary>
    /// Until <see cref="EndDeferredWrites"/>, refcount changes stay in the cached blocks and are then
    /// written one whole block at a time (one write per block instead of one per cluster). For walks
    /// over a whole snapshot tree, whose changes only need to be durable together, before the caller's
    /// next barrier. Allocation inside the window first writes what is pending.
    /// </summary>
    public void BeginDeferredWrites()
    {
        _deferWrites = true;
    }

    /// <summary>Writes every block changed since <see cref="BeginDeferredWrites"/> and ends deferral.</summary>
    public void EndDeferredWrites()
    {
        _deferWrites = false;
        WriteDirtyBlocks();
    }

    /// <summary>The owner's barrier, after any deferred changes: a barrier must cover everything before it.</summary>
    private void Barrier()
    {
        WriteDirtyBlocks();
        _barrier();
    }

    private void WriteDirtyBlocks()
    {
        foreach (long tableIndex in _dirtyBlocks)
        {
            _file.Write((long)_table[tableIndex], _blockCache[tableIndex]);
        }
        _dirtyBlocks.Clear();
    }

    public ulong Get(long clusterIndex)
    {
        long tableIndex = clusterIndex / _entriesPerBlock;
        if (tableIndex >= _table.Length || _table[tableIndex] == 0)
        {
            return 0;
        }
        byte[] block = LoadBlock(tableIndex);
        return ReadEntry(block, clusterIndex % _entriesPerBlock);
    }

    /// <summary>Adds <paramref name="delta"/> to one cluster's refcount, checking both bounds.</summary>
    public void Adjust(long clusterIndex, long delta)
    {
        ulong current = Get(clusterIndex);
        if (delta > 0 && _maxRefcount - current < (ulong)delta)
        {
            throw new ImageCorruptException(_file.Path,
                $"qcow2 image '{_file.Path}': refcount overflow for cluster at offset {clusterIndex << _clusterBits} " +
                $"(refcount {current} + {delta} exceeds the {_refcountBits}-bit maximum {_maxRefcount}).",
                (ulong)(clusterIndex << _clusterBits));
        }
        if (delta < 0 && current < (ulong)(-delta))
        {
            throw new ImageCorruptException(_file.Path,
                $"qcow2 image '{_file.Path}': refcount underflow for cluster at offset {clusterIndex << _clusterBits} (refcount {current}, decrement {-delta}).",
                (ulong)(clusterIndex << _clusterBits));
        }
        ulong updated = delta >= 0 ? current + (ulong)delta : current - (ulong)(-delta);
        Set(clusterIndex, updated);
        if (updated == 0)
        {
            _freeClusterHint = Math.Min(_freeClusterHint, clusterIndex);
            _onClusterFreed(clusterIndex << _clusterBits);
        }
    }

    /// <summary>Decrements every cluster overlapping [offset, offset + length).</summary>
    public void Free(long offset, long lengthBytes)
    {
        long first = offset >> _clusterBits;
        long last = (offset + lengthBytes - 1) >> _clusterBits;
        for (long c = first; c <= last; c++)
        {
            Adjust(c, -1);
        }
    }

    /// <summary>
    /// Allocates <paramref name="count"/> contiguous clusters with refcount 1 and returns the file
    /// offset of the first. The refcounts are durable (barrier) before this returns, so the caller
    /// may reference the clusters from the moment their contents are written.
    /// </summary>
    public long Allocate(long count)
    {
        long hintBefore = _freeClusterHint;
        long start = FindFreeRun(count, hintBefore);
        _inFlightStart = start;
        _inFlightCount = count;
        try
        {
            for (long i = 0; i < count; i++)
            {
                Set(start + i, 1);
            }
        }
        finally
        {
            _inFlightCount = 0;
        }
        // Advance the hint only if nothing below it was freed meanwhile (refcount-table growth frees the old table).
        if (_freeClusterHint == hintBefore && (count == 1 || start == hintBefore))
        {
            _freeClusterHint = start + count;
        }
        _highWaterCluster = Math.Max(_highWaterCluster, start + count);
        Barrier();
        return start << _clusterBits;
    }

    private long FindFreeRun(long count, long from)
    {
        long c = Math.Max(from, 1);
        while (true)
        {
            long i = 0;
            while (i < count && IsFree(c + i))
            {
                i++;
            }
            if (i == count)
            {
                return c;
            }
            c += i + 1;
        }
    }

    private bool IsFree(long clusterIndex)
    {
        if (_inFlightCount > 0 && clusterIndex >= _inFlightStart && clusterIndex < _inFlightStart + _inFlightCount)
        {
            return false;
        }
        if (_reserved.Count > 0 && _reserved.Contains(clusterIndex))
        {
            return false;
        }
        return Get(clusterIndex) == 0;
    }

    private void Set(long clusterIndex, ulong value)
    {
        long tableIndex = clusterIndex / _entriesPerBlock;
        if (tableIndex >= _table.Length)
        {
            WriteDirtyBlocks(); // growth syncs and switches the header: pending changes go first
            GrowTable(tableIndex + 1);
        }
        if (_table[tableIndex] == 0)
        {
            if (value == 0)
            {
                return;
            }
            WriteDirtyBlocks();
            AllocateBlock(tableIndex);
        }
        byte[] block = LoadBlock(tableIndex);
        long index = clusterIndex % _entriesPerBlock;
        WriteEntry(block, index, value);
        if (_deferWrites)
        {
            _dirtyBlocks.Add(tableIndex);
            return;
        }
        // Write back only the bytes holding this entry.
        int firstByte, byteCount;
        if (_refcountBits >= 8)
        {
            firstByte = (int)(index * (_refcountBits / 8));
            byteCount = _refcountBits / 8;
        }
        else
        {
            firstByte = (int)(index * _refcountBits / 8);
            byteCount = 1;
        }
        _file.Write((long)_table[tableIndex] + firstByte, block.AsSpan(firstByte, byteCount));
    }

    /// <summary>Creates the refcount block for <paramref name="tableIndex"/>.</summary>
    private void AllocateBlock(long tableIndex)
    {
        // Prefer a cluster the new block covers itself: then no other block has to change.
        long firstCovered = tableIndex * _entriesPerBlock;
        long candidate = FindFreeRun(1, Math.Max(_freeClusterHint, 1));
        if (candidate / _entriesPerBlock != tableIndex)
        {
            long inRange = FindFreeRun(1, Math.Max(firstCovered, 1));
            if (inRange / _entriesPerBlock == tableIndex)
            {
                candidate = inRange;
            }
        }
        var block = new byte[_clusterSize];
        if (candidate / _entriesPerBlock == tableIndex)
        {
            WriteEntry(block, candidate - firstCovered, 1);
        }
        else
        {
            // The whole range is taken by the allocation in progress: account for the block
            // elsewhere (this may recurse into creating that range's block, which terminates
            // because each level finds a free cluster outside the in-flight run).
            // Reserve it first: creating that range's block must not pick the same cluster.
            _reserved.Add(candidate);
            try
            {
                Set(candidate, 1);
            }
            finally
            {
                _reserved.Remove(candidate);
            }
        }
        _highWaterCluster = Math.Max(_highWaterCluster, candidate + 1);
        long blockOffset = candidate << _clusterBits;
        _file.Write(blockOffset, block);
        Barrier();
        WriteTableEntry(tableIndex, (ulong)blockOffset);
        CacheBlock(tableIndex, block);
    }

    private void WriteTableEntry(long tableIndex, ulong blockOffset)
    {
        Span<byte> be = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(be, blockOffset);
        _file.Write(_tableOffset + tableIndex * 8, be);
        _table[tableIndex] = blockOffset;
    }

    /// <summary>
    /// Moves the refcount table to a larger area at the end of the file. The new table and any
    /// refcount blocks needed to describe it are written first; the header switch is one 12-byte
    /// write; only then is the old table freed.
    /// </summary>
    private void GrowTable(long minEntries)
    {
        long entriesPerTableCluster = _clusterSize / 8;
        long start = Math.Max((_file.LengthBytes + _clusterSize - 1) >> _clusterBits, _inFlightStart + _inFlightCount);
        start = Math.Max(Math.Max(start, 1), _highWaterCluster);
        long newEntries = Math.Max(minEntries, _table.Length * 2L);
        long tableClusters, newBlockCount;
        List<long> newBlockIndexes;
        while (true)
        {
            tableClusters = (newEntries + entriesPerTableCluster - 1) / entriesPerTableCluster;
            newEntries = tableClusters * entriesPerTableCluster;
            newBlockIndexes = new List<long>();
            newBlockCount = 0;
            // Fixed point: the area [start, start + tableClusters + newBlockCount) must be covered.
            while (true)
            {
                long end = start + tableClusters + newBlockCount;
                newBlockIndexes.Clear();
                for (long b = start / _entriesPerBlock; b <= (end - 1) / _entriesPerBlock; b++)
                {
                    if (b >= _table.Length || _table[b] == 0)
                    {
                        newBlockIndexes.Add(b);
                    }
                }
                if (newBlockIndexes.Count == newBlockCount)
                {
                    break;
                }
                newBlockCount = newBlockIndexes.Count;
            }
            long lastIndex = (start + tableClusters + newBlockCount - 1) / _entriesPerBlock;
            if (lastIndex < newEntries)
            {
                break;
            }
            newEntries = lastIndex + 1;
        }
        if (tableClusters * _clusterSize > QCOW_MAX_REFTABLE_SIZE_BYTES)
        {
            throw new DiskImageException(_file.Path, $"qcow2 image '{_file.Path}' is full: the refcount table would exceed {QCOW_MAX_REFTABLE_SIZE_BYTES >> 20} MiB.");
        }

        long areaEnd = start + tableClusters + newBlockCount;
        long savedInFlightStart = _inFlightStart, savedInFlightCount = _inFlightCount;
        _highWaterCluster = Math.Max(_highWaterCluster, areaEnd);
        var newTable = new ulong[newEntries];
        Array.Copy(_table, newTable, _table.Length);
        var newBlocks = new Dictionary<long, byte[]>();
        for (int k = 0; k < newBlockIndexes.Count; k++)
        {
            long blockCluster = start + tableClusters + k;
            newTable[newBlockIndexes[k]] = (ulong)(blockCluster << _clusterBits);
            newBlocks[newBlockIndexes[k]] = new byte[_clusterSize];
        }
        // Account for the new area: in a new block's buffer, or in an existing block on disk.
        _inFlightStart = start;
        _inFlightCount = areaEnd - start;
        for (long c = start; c < areaEnd; c++)
        {
            long b = c / _entriesPerBlock;
            if (newBlocks.TryGetValue(b, out var buffer))
            {
                WriteEntry(buffer, c % _entriesPerBlock, 1);
            }
            else
            {
                Set(c, 1);
            }
        }
        foreach (var (b, buffer) in newBlocks)
        {
            _file.Write((long)newTable[b], buffer);
        }
        var raw = new byte[tableClusters * _clusterSize];
        for (int i = 0; i < newTable.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), newTable[i]);
        }
        long newTableOffset = start << _clusterBits;
        _file.Write(newTableOffset, raw);
        Barrier();

        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(header, (ulong)newTableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(header[8..], (uint)tableClusters);
        _file.Write(OffsetRefcountTableOffset, header);
        Barrier();

        long oldOffset = _tableOffset;
        long oldClusters = _tableClusters;
        _table = newTable;
        _tableOffset = newTableOffset;
        _tableClusters = tableClusters;
        foreach (var (b, buffer) in newBlocks)
        {
            CacheBlock(b, buffer);
        }
        _inFlightStart = savedInFlightStart;
        _inFlightCount = savedInFlightCount;
        Free(oldOffset, oldClusters * _clusterSize);
    }

    private byte[] LoadBlock(long tableIndex)
    {
        if (_blockCache.TryGetValue(tableIndex, out var block))
        {
            return block;
        }
        block = new byte[_clusterSize];
        _file.Read((long)_table[tableIndex], block);
        CacheBlock(tableIndex, block);
        return block;
    }

    private void CacheBlock(long tableIndex, byte[] block)
    {
        if (_blockCache.Count >= MaxCachedBlocks && !_blockCache.ContainsKey(tableIndex))
        {
            // Write-through cache (pending deferred changes are written first): dropping entries loses nothing.
            WriteDirtyBlocks();
            _blockCache.Clear();
        }
        _blockCache[tableIndex] = block;
    }

    private ulong ReadEntry(byte[] block, long index)
    {
        switch (_refcountBits)
        {
            case 8: return block[index];
            case 16: return BinaryPrimitives.ReadUInt16BigEndian(block.AsSpan((int)index * 2));
            case 32: return BinaryPrimitives.ReadUInt32BigEndian(block.AsSpan((int)index * 4));
            case 64: return BinaryPrimitives.ReadUInt64BigEndian(block.AsSpan((int)index * 8));
            default:
                long bit = index * _refcountBits;
                return (ulong)((block[bit / 8] >> (int)(bit % 8)) & (int)_maxRefcount);
        }
    }

    private void WriteEntry(byte[] block, long index, ulong value)
    {
        switch (_refcountBits)
        {
            case 8: block[index] = (byte)value; break;
            case 16: BinaryPrimitives.WriteUInt16BigEndian(block.AsSpan((int)index * 2), (ushort)value); break;
            case 32: BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan((int)index * 4), (uint)value); break;
            case 64: BinaryPrimitives.WriteUInt64BigEndian(block.AsSpan((int)index * 8), value); break;
            default:
                // Sub-byte widths: bit 0 is the least significant bit of the byte.
                long bit = index * _refcountBits;
                int shift = (int)(bit % 8);
                int mask = (int)_maxRefcount << shift;
                block[bit / 8] = (byte)((block[bit / 8] & ~mask) | (((int)value << shift) & mask));
                break;
        }
    }
}
