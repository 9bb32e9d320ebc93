using System.Buffers.Binary;
using System.IO.Compression;
using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

/// <summary>
/// A qcow2 image (version 3 read-write, version 2 read-write without zero clusters).
/// </summary>
/// <remarks>
/// Thread-safety: all public members take one lock, so concurrent callers are serialised.
/// Crash safety: metadata is written through (no dirty cache) in an order where a reference to a
/// cluster is only written after the cluster's refcount and contents, and a refcount is only
/// dropped after the reference is gone. An interrupted process therefore leaves at worst leaked
/// clusters. With <see cref="StrictMetadataOrdering"/> (default) fdatasync separates the dependent
/// steps, extending this to power loss.
/// </remarks>
public sealed class Qcow2Image : IBlockBackend
{
    private const int MaxCachedL2Tables = 64;

    private readonly object _lock = new();
    private readonly ImageFile _file;
    private readonly Qcow2Header _header;
    private readonly int _clusterBits;
    private readonly long _clusterSize;
    private readonly long _l2Entries;
    private readonly Qcow2Refcounts? _refcounts;
    private readonly IBlockBackend? _backing;
    private readonly Dictionary<long, ulong[]> _l2Cache = new();
    private readonly byte[] _clusterBuffer;
    private readonly int _csizeShift;
    private readonly ulong _csizeMask;
    private readonly ulong _compressedOffsetMask;

    private readonly List<ulong> _pendingReleases = new();
    private ulong[] _l1;
    private long _preallocatedNext;
    private long _preallocatedCount;
    private List<Qcow2SnapshotEntry> _snapshots;
    private long _snapshotTableSizeBytes;
    private ulong _compressedCacheEntry;
    private byte[]? _compressedCache;
    private byte[]? _zeroCluster;
    private bool _disposed;

    private Qcow2Image(ImageFile file, Qcow2Header header, IBlockBackend? backing)
    {
        _file = file;
        _header = header;
        _backing = backing;
        _clusterBits = header.ClusterBits;
        _clusterSize = header.ClusterSizeBytes;
        _l2Entries = _clusterSize / 8;
        _clusterBuffer = new byte[_clusterSize];
        _csizeShift = 62 - (_clusterBits - 8);
        _csizeMask = (1UL << (_clusterBits - 8)) - 1;
        _compressedOffsetMask = (1UL << _csizeShift) - 1;

        _l1 = ReadL1Table(header.L1TableOffset, header.L1Size, "active L1 table");
        _snapshots = Qcow2SnapshotEntry.ReadTable(file, header, out _snapshotTableSizeBytes);
        if (file.Writable)
        {
            _refcounts = new Qcow2Refcounts(file, header, Barrier, OnClusterFreed);
            if (header.Version >= 3 && header.AutoclearFeatures != 0)
            {
                // We do not maintain bitmaps etc.; the spec requires clearing unknown autoclear bits before writing.
                WriteHeaderUInt64(OffsetAutoclearFeatures, 0);
                header.AutoclearFeatures = 0;
            }
        }
    }

    public string Path => _file.Path;

    public ulong SizeBytes => _header.SizeBytes;

    public bool ReadOnly => !_file.Writable;

    /// <summary>qcow2 format version (2 or 3).</summary>
    public int Version => (int)_header.Version;

    public long ClusterSizeBytes => _clusterSize;

    /// <summary>Refcount width in bits (16 for qemu-img's default).</summary>
    public int RefcountBits => 1 << _header.RefcountOrder;

    /// <summary>Backing file name as stored in the header (may be relative to this image's directory).</summary>
    public string? BackingFileName => _header.BackingFileName;

    /// <summary>Backing format from the header extension, if recorded.</summary>
    public string? BackingFormat => _header.BackingFormat;

    /// <summary>The opened backing image, if any.</summary>
    public IBlockBackend? Backing => _backing;

    /// <summary>fdatasync between dependent metadata updates (power-loss safety). Default true.</summary>
    public bool StrictMetadataOrdering { get; set; } = true;

    /// <summary>Internal snapshots in table order.</summary>
    public IReadOnlyList<Qcow2SnapshotInfo> Snapshots
    {
        get
        {
            lock (_lock)
            {
                return _snapshots.Select(s => s.ToInfo()).ToList();
            }
        }
    }

    /// <summary>
    /// Opens a qcow2 image on an already opened (and locked) file. <paramref name="openBacking"/> is
    /// called with the parsed header when the image names a backing file; it owns loop detection.
    /// </summary>
    internal static Qcow2Image Open(ImageFile file, Func<string, string?, IBlockBackend> openBacking)
    {
        var probe = new byte[Math.Min(file.LengthBytes, 1L << MAX_CLUSTER_BITS)];
        file.Read(0, probe);
        int clusterBits = probe.Length >= OffsetClusterBits + 4
            ? (int)BinaryPrimitives.ReadUInt32BigEndian(probe.AsSpan(OffsetClusterBits))
            : MIN_CLUSTER_BITS;
        int firstClusterLength = (clusterBits >= MIN_CLUSTER_BITS && clusterBits <= MAX_CLUSTER_BITS)
            ? (int)Math.Min(probe.Length, 1L << clusterBits)
            : probe.Length;
        var header = Qcow2Header.Parse(file.Path, probe.AsSpan(0, firstClusterLength), file.LengthBytes, readOnly: !file.Writable);
        IBlockBackend? backing = header.BackingFileName is null ? null : openBacking(header.BackingFileName, header.BackingFormat);
        try
        {
            return new Qcow2Image(file, header, backing);
        }
        catch
        {
            backing?.Dispose();
            throw;
        }
    }

    // ---------------------------------------------------------------- guest I/O

    public void Read(ulong offset, Span<byte> buffer)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            BlockRequestValidator.CheckRange(Path, SizeBytes, offset, (ulong)buffer.Length);
            long position = (long)offset;
            while (!buffer.IsEmpty)
            {
                long guestCluster = position >> _clusterBits;
                int intra = (int)(position & (_clusterSize - 1));
                int n = (int)Math.Min(buffer.Length, _clusterSize - intra);
                ReadFromCluster(guestCluster, GetL2Entry(guestCluster), intra, buffer[..n]);
                buffer = buffer[n..];
                position += n;
            }
        }
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            BlockRequestValidator.CheckWritable(Path, ReadOnly);
            BlockRequestValidator.CheckRange(Path, SizeBytes, offset, (ulong)data.Length);
            long firstCluster = (long)offset >> _clusterBits;
            long lastCluster = data.IsEmpty ? firstCluster - 1 : ((long)offset + data.Length - 1) >> _clusterBits;
            // One contiguous allocation (one refcount barrier) for every cluster this request must
            // copy-on-write, instead of one per cluster.
            long needed = 0;
            for (long gc = firstCluster; gc <= lastCluster; gc++)
            {
                if (!CanWriteInPlace(gc, GetL2Entry(gc)))
                {
                    needed++;
                }
            }
            if (needed > 0)
            {
                _preallocatedNext = _refcounts!.Allocate(needed);
                _preallocatedCount = needed;
            }
            try
            {
                long position = (long)offset;
                while (!data.IsEmpty)
                {
                    long guestCluster = position >> _clusterBits;
                    int intra = (int)(position & (_clusterSize - 1));
                    int n = (int)Math.Min(data.Length, _clusterSize - intra);
                    WriteCluster(guestCluster, intra, data[..n]);
                    data = data[n..];
                    position += n;
                }
            }
            finally
            {
                ReturnUnusedPreallocation();
                ReleasePending();
            }
        }
    }

    private bool CanWriteInPlace(long guestCluster, ulong entry)
    {
        return (_l1[guestCluster / _l2Entries] & QCOW_OFLAG_COPIED) != 0
            && IsWritableInPlace(entry) && (entry & QCOW_OFLAG_ZERO) == 0;
    }

    private long AllocateDataCluster()
    {
        if (_preallocatedCount > 0)
        {
            long host = _preallocatedNext;
            _preallocatedNext += _clusterSize;
            _preallocatedCount--;
            return host;
        }
        return _refcounts!.Allocate(1);
    }

    private void ReturnUnusedPreallocation()
    {
        for (; _preallocatedCount > 0; _preallocatedCount--, _preallocatedNext += _clusterSize)
        {
            _refcounts!.Adjust(_preallocatedNext >> _clusterBits, -1);
        }
    }

    /// <summary>Drops references collected during a request, after one barrier makes the new mappings durable.</summary>
    private void ReleasePending()
    {
        if (_pendingReleases.Count == 0)
        {
            return;
        }
        Barrier();
        foreach (ulong entry in _pendingReleases)
        {
            if ((entry & QCOW_OFLAG_COMPRESSED) != 0)
            {
                (long offset, long length) = CompressedRange(entry);
                _refcounts!.Free(offset & ~(long)(CompressedSectorSizeBytes - 1), length);
            }
            else
            {
                _refcounts!.Adjust((long)(entry & L2E_OFFSET_MASK) >> _clusterBits, -1);
            }
        }
        _pendingReleases.Clear();
    }

    public void Flush()
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            if (!ReadOnly)
            {
                _file.DataSync();
            }
        }
    }

    public void Discard(ulong offset, ulong lengthBytes)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            BlockRequestValidator.CheckWritable(Path, ReadOnly);
            BlockRequestValidator.CheckRange(Path, SizeBytes, offset, lengthBytes);
            // Only whole clusters can be released; partial clusters keep their data (discard is a hint).
            long first = ((long)offset + _clusterSize - 1) >> _clusterBits;
            long end = (long)(offset + lengthBytes) >> _clusterBits;
            if ((long)(offset + lengthBytes) == (long)SizeBytes)
            {
                end = ((long)SizeBytes + _clusterSize - 1) >> _clusterBits; // the tail cluster may be partial
            }
            for (long gc = first; gc < end; gc++)
            {
                ulong entry = GetL2Entry(gc);
                if (!HasAllocation(entry))
                {
                    continue;
                }
                // With a backing file an unallocated entry would expose the backing data again.
                ulong replacement = _backing is not null && _header.Version >= 3 ? QCOW_OFLAG_ZERO : 0;
                if (_backing is not null && _header.Version < 3)
                {
                    continue;
                }
                ReplaceEntry(gc, entry, replacement);
            }
            ReleasePending();
        }
    }

    public void WriteZeroes(ulong offset, ulong lengthBytes, bool mayUnmap)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            BlockRequestValidator.CheckWritable(Path, ReadOnly);
            BlockRequestValidator.CheckRange(Path, SizeBytes, offset, lengthBytes);
            long position = (long)offset;
            long end = (long)(offset + lengthBytes);
            _zeroCluster ??= new byte[_clusterSize];
            while (position < end)
            {
                long guestCluster = position >> _clusterBits;
                int intra = (int)(position & (_clusterSize - 1));
                int n = (int)Math.Min(end - position, _clusterSize - intra);
                bool wholeCluster = intra == 0 && (n == _clusterSize || position + n == (long)SizeBytes);
                if (wholeCluster)
                {
                    ZeroWholeCluster(guestCluster, mayUnmap);
                }
                else
                {
                    ulong entry = GetL2Entry(guestCluster);
                    if (!ReadsAsZeroWithoutData(entry))
                    {
                        WriteCluster(guestCluster, intra, _zeroCluster.AsSpan(0, n));
                    }
                }
                position += n;
            }
            ReleasePending();
        }
    }

    private void ZeroWholeCluster(long guestCluster, bool mayUnmap)
    {
        ulong entry = GetL2Entry(guestCluster);
        if (ReadsAsZeroWithoutData(entry))
        {
            return;
        }
        if (_header.Version < 3)
        {
            WriteCluster(guestCluster, 0, _zeroCluster!);
            return;
        }
        if (!mayUnmap && IsWritableInPlace(entry))
        {
            // Keep the allocation (the guest asked not to unmap): offset | COPIED | ZERO.
            ReplaceEntry(guestCluster, entry, (entry & (L2E_OFFSET_MASK | QCOW_OFLAG_COPIED)) | QCOW_OFLAG_ZERO, releaseOld: false);
            return;
        }
        ReplaceEntry(guestCluster, entry, QCOW_OFLAG_ZERO);
    }

    /// <summary>True when the cluster reads as zero and no write is needed to keep it so.</summary>
    private bool ReadsAsZeroWithoutData(ulong entry)
    {
        if ((entry & QCOW_OFLAG_COMPRESSED) == 0 && (entry & QCOW_OFLAG_ZERO) != 0)
        {
            return true;
        }
        return entry == 0 && _backing is null;
    }

    private static bool HasAllocation(ulong entry) =>
        (entry & QCOW_OFLAG_COMPRESSED) != 0 || (entry & L2E_OFFSET_MASK) != 0;

    private static bool IsWritableInPlace(ulong entry) =>
        (entry & QCOW_OFLAG_COPIED) != 0 && (entry & QCOW_OFLAG_COMPRESSED) == 0 && (entry & L2E_OFFSET_MASK) != 0;

    // ---------------------------------------------------------------- cluster mapping

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

    private void ReadFromCluster(long guestCluster, ulong entry, int intra, Span<byte> destination)
    {
        if ((entry & QCOW_OFLAG_COMPRESSED) != 0)
        {
            ReadCompressedCluster(entry).AsSpan(intra, destination.Length).CopyTo(destination);
            return;
        }
        if ((entry & QCOW_OFLAG_ZERO) != 0)
        {
            destination.Clear();
            return;
        }
        long host = (long)(entry & L2E_OFFSET_MASK);
        if (host == 0)
        {
            ReadFromBacking((guestCluster << _clusterBits) + intra, destination);
            return;
        }
        CheckDataClusterOffset(guestCluster, host);
        _file.Read(host + intra, destination);
    }

    private void ReadFromBacking(long guestOffset, Span<byte> destination)
    {
        if (_backing is null || (ulong)guestOffset >= _backing.SizeBytes)
        {
            destination.Clear();
            return;
        }
        int n = (int)Math.Min(destination.Length, (long)_backing.SizeBytes - guestOffset);
        _backing.Read((ulong)guestOffset, destination[..n]);
        destination[n..].Clear();
    }

    private void CheckDataClusterOffset(long guestCluster, long host)
    {
        if ((host & (_clusterSize - 1)) != 0 || host >= _file.LengthBytes)
        {
            throw new ImageCorruptException(Path,
                $"qcow2 image '{Path}': guest cluster {guestCluster} maps to host offset {host}, which is misaligned or beyond the end of the file ({_file.LengthBytes} bytes).",
                (ulong)host);
        }
    }

    private byte[] ReadCompressedCluster(ulong entry)
    {
        if (_compressedCache is not null && _compressedCacheEntry == entry)
        {
            return _compressedCache;
        }
        (long offset, long length) = CompressedRange(entry);
        if (offset >= _file.LengthBytes)
        {
            throw new ImageCorruptException(Path, $"qcow2 image '{Path}': compressed cluster at offset {offset} lies beyond the end of the file.", (ulong)offset);
        }
        int start = (int)(offset & (CompressedSectorSizeBytes - 1));
        var compressed = new byte[length - start];
        _file.Read(offset, compressed);
        var output = _compressedCache ?? new byte[_clusterSize];
        _compressedCache = null;
        int produced;
        try
        {
            using var input = new MemoryStream(compressed, writable: false);
            // qcow2 stores raw deflate data (zlib window bits -12, no header).
            using var inflater = new DeflateStream(input, CompressionMode.Decompress);
            produced = inflater.ReadAtLeast(output, output.Length, throwOnEndOfStream: false);
        }
        catch (InvalidDataException e)
        {
            throw new ImageCorruptException(Path, $"qcow2 image '{Path}': compressed cluster at offset {offset} does not decompress: {e.Message}", (ulong)offset);
        }
        if (produced != output.Length)
        {
            throw new ImageCorruptException(Path, $"qcow2 image '{Path}': compressed cluster at offset {offset} decompresses to {produced} bytes instead of {output.Length}.", (ulong)offset);
        }
        _compressedCache = output;
        _compressedCacheEntry = entry;
        return output;
    }

    /// <summary>Host range of a compressed cluster: start offset and sector-rounded length from the sector start.</summary>
    private (long Offset, long LengthFromSectorStart) CompressedRange(ulong entry)
    {
        long offset = (long)(entry & _compressedOffsetMask);
        long sectors = (long)((entry >> _csizeShift) & _csizeMask) + 1;
        long length = sectors * CompressedSectorSizeBytes;
        return (offset, length);
    }

    private void WriteCluster(long guestCluster, int intra, ReadOnlySpan<byte> data)
    {
        ulong entry = GetL2Entry(guestCluster);
        long l1Index = guestCluster / _l2Entries;
        if (CanWriteInPlace(guestCluster, entry))
        {
            long host = (long)(entry & L2E_OFFSET_MASK);
            CheckDataClusterOffset(guestCluster, host);
            _file.Write(host + intra, data);
            return;
        }

        // Copy-on-write into a fresh cluster: old contents (backing file, compressed, shared or zero) + new data.
        ReadOnlySpan<byte> full;
        if (data.Length == _clusterSize)
        {
            full = data;
        }
        else
        {
            ReadFromCluster(guestCluster, entry, 0, _clusterBuffer);
            data.CopyTo(_clusterBuffer.AsSpan(intra));
            full = _clusterBuffer;
        }
        long l2Offset = GetWritableL2(l1Index);
        long newHost = AllocateDataCluster();
        _file.Write(newHost, full);
        SetL2Entry(l2Offset, guestCluster % _l2Entries, (ulong)newHost | QCOW_OFLAG_COPIED);
        ReleaseClusters(entry);
    }

    /// <summary>Points the guest cluster at <paramref name="replacement"/> and releases the old allocation.</summary>
    private void ReplaceEntry(long guestCluster, ulong oldEntry, ulong replacement, bool releaseOld = true)
    {
        long l2Offset = GetWritableL2(guestCluster / _l2Entries);
        SetL2Entry(l2Offset, guestCluster % _l2Entries, replacement);
        if (releaseOld)
        {
            ReleaseClusters(oldEntry);
        }
    }

    /// <summary>Drops the references an L2 entry held; call only after the entry was overwritten.</summary>
    private void ReleaseClusters(ulong oldEntry)
    {
        if (HasAllocation(oldEntry))
        {
            _pendingReleases.Add(oldEntry);
        }
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

    private void Barrier()
    {
        if (StrictMetadataOrdering)
        {
            _file.DataSync();
        }
    }

    private void OnClusterFreed(long offset)
    {
        _l2Cache.Remove(offset);
        _compressedCache = null;
        if (offset < _file.LengthBytes)
        {
            // Give the space back to the host file system; the cluster now reads as zero.
            _file.TryPunchHole(offset, Math.Min(_clusterSize, _file.LengthBytes - offset));
        }
    }

    private void WriteHeaderUInt64(int fieldOffset, ulong value)
    {
        Span<byte> be = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(be, value);
        _file.Write(fieldOffset, be);
    }

    // ---------------------------------------------------------------- snapshots

    /// <summary>Creates an internal snapshot of the current disk state (like <c>qemu-img snapshot -c</c>).</summary>
    public Qcow2SnapshotInfo CreateSnapshot(string name)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            BlockRequestValidator.CheckWritable(Path, ReadOnly);
            if (string.IsNullOrEmpty(name) || System.Text.Encoding.UTF8.GetByteCount(name) > ushort.MaxValue)
            {
                throw new ArgumentException("Snapshot name must be non-empty and at most 65535 bytes.", nameof(name));
            }
            if (_snapshots.Any(s => s.Name == name))
            {
                throw new DiskImageException(Path, $"qcow2 image '{Path}' already has a snapshot named '{name}'.");
            }
            if (_snapshots.Count >= QCOW_MAX_SNAPSHOTS)
            {
                throw new DiskImageException(Path, $"qcow2 image '{Path}' already has the maximum of {QCOW_MAX_SNAPSHOTS} snapshots.");
            }
            string id = NextSnapshotId();

            // 1. Copy of the active L1 (COPIED flags are meaningless outside the active table).
            long l1Bytes = _l1.LongLength * 8;
            long snapshotL1Offset = 0;
            if (_l1.Length > 0)
            {
                snapshotL1Offset = _refcounts!.Allocate(ClustersFor(l1Bytes));
                _file.Write(snapshotL1Offset, SerializeTable(_l1.Select(e => e & ~QCOW_OFLAG_COPIED).ToArray(), ClustersFor(l1Bytes) * _clusterSize));
            }
            // 2. Everything reachable becomes shared: clear COPIED first (a stale set flag would allow
            //    an in-place write into a shared cluster), then take the extra references.
            SetCopiedFlagsFromRefcounts(clearAll: true);
            AdjustTreeRefcounts(_l1, +1);
            Barrier();
            // 3. Publish the snapshot.
            var entry = Qcow2SnapshotEntry.CreateNew(id, name, (ulong)snapshotL1Offset, (uint)_l1.Length, SizeBytes);
            var updated = new List<Qcow2SnapshotEntry>(_snapshots) { entry };
            WriteSnapshotTable(updated);
            return entry.ToInfo();
        }
    }

    /// <summary>Reverts the disk to a snapshot (like <c>qemu-img snapshot -a</c>); the snapshot is kept.</summary>
    public void ApplySnapshot(string idOrName)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            BlockRequestValidator.CheckWritable(Path, ReadOnly);
            var snapshot = FindSnapshot(idOrName);
            ulong[] snapshotL1 = ReadL1Table(snapshot.L1TableOffset, snapshot.L1Size, $"L1 table of snapshot '{snapshot.Name}'");
            for (int i = 0; i < snapshotL1.Length; i++)
            {
                snapshotL1[i] &= ~QCOW_OFLAG_COPIED;
            }
            // References for the new state first, then switch, then drop the old state's references.
            AdjustTreeRefcounts(snapshotL1, +1);
            Barrier();
            ulong[] oldL1 = _l1;
            if (snapshotL1.Length <= _l1.Length)
            {
                var newL1 = new ulong[_l1.Length];
                Array.Copy(snapshotL1, newL1, snapshotL1.Length);
                _file.Write((long)_header.L1TableOffset, SerializeTable(newL1, newL1.LongLength * 8));
                _l1 = newL1;
            }
            else
            {
                long bytes = snapshotL1.LongLength * 8;
                long newOffset = _refcounts!.Allocate(ClustersFor(bytes));
                _file.Write(newOffset, SerializeTable(snapshotL1, ClustersFor(bytes) * _clusterSize));
                Barrier();
                long oldOffset = (long)_header.L1TableOffset;
                long oldBytes = _l1.LongLength * 8;
                Span<byte> fields = stackalloc byte[12];
                BinaryPrimitives.WriteUInt32BigEndian(fields, (uint)snapshotL1.Length);
                BinaryPrimitives.WriteUInt64BigEndian(fields[4..], (ulong)newOffset);
                _file.Write(OffsetL1Size, fields);
                _header.L1Size = (uint)snapshotL1.Length;
                _header.L1TableOffset = (ulong)newOffset;
                _l1 = snapshotL1;
                Barrier();
                if (oldBytes > 0)
                {
                    _refcounts.Free(oldOffset, oldBytes);
                }
            }
            if (snapshot.DiskSizeBytes != SizeBytes)
            {
                WriteHeaderUInt64(OffsetSize, snapshot.DiskSizeBytes);
                _header.SizeBytes = snapshot.DiskSizeBytes;
            }
            Barrier();
            AdjustTreeRefcounts(oldL1, -1);
            SetCopiedFlagsFromRefcounts(clearAll: false);
        }
    }

    /// <summary>Deletes a snapshot (like <c>qemu-img snapshot -d</c>) and frees what only it used.</summary>
    public void DeleteSnapshot(string idOrName)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            BlockRequestValidator.CheckWritable(Path, ReadOnly);
            var snapshot = FindSnapshot(idOrName);
            ulong[] snapshotL1 = ReadL1Table(snapshot.L1TableOffset, snapshot.L1Size, $"L1 table of snapshot '{snapshot.Name}'");
            WriteSnapshotTable(_snapshots.Where(s => !ReferenceEquals(s, snapshot)).ToList());
            Barrier();
            AdjustTreeRefcounts(snapshotL1, -1);
            if (snapshot.L1Size > 0)
            {
                _refcounts!.Free((long)snapshot.L1TableOffset, (long)snapshot.L1Size * 8);
            }
            SetCopiedFlagsFromRefcounts(clearAll: false);
        }
    }

    private Qcow2SnapshotEntry FindSnapshot(string idOrName)
    {
        return _snapshots.FirstOrDefault(s => s.Id == idOrName)
            ?? _snapshots.FirstOrDefault(s => s.Name == idOrName)
            ?? throw new DiskImageException(Path, $"qcow2 image '{Path}' has no snapshot with ID or name '{idOrName}'.");
    }

    private string NextSnapshotId()
    {
        long max = 0;
        foreach (var s in _snapshots)
        {
            if (long.TryParse(s.Id, out long n) && n > max)
            {
                max = n;
            }
        }
        return (max + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    private void WriteSnapshotTable(List<Qcow2SnapshotEntry> snapshots)
    {
        byte[] table = Qcow2SnapshotEntry.SerializeTable(snapshots);
        long newOffset = 0;
        if (table.Length > 0)
        {
            long clusters = ClustersFor(table.Length);
            newOffset = _refcounts!.Allocate(clusters);
            var padded = new byte[clusters * _clusterSize];
            table.CopyTo(padded, 0);
            _file.Write(newOffset, padded);
            Barrier();
        }
        Span<byte> fields = stackalloc byte[12];
        BinaryPrimitives.WriteUInt32BigEndian(fields, (uint)snapshots.Count);
        BinaryPrimitives.WriteUInt64BigEndian(fields[4..], (ulong)newOffset);
        _file.Write(OffsetNbSnapshots, fields);
        long oldOffset = (long)_header.SnapshotsOffset;
        long oldSize = _snapshotTableSizeBytes;
        _header.NbSnapshots = (uint)snapshots.Count;
        _header.SnapshotsOffset = (ulong)newOffset;
        _snapshots = snapshots;
        _snapshotTableSizeBytes = table.Length;
        if (oldOffset != 0 && oldSize > 0)
        {
            Barrier();
            _refcounts!.Free(oldOffset, oldSize);
        }
    }

    /// <summary>Adds <paramref name="delta"/> to every cluster reachable from an L1 table.</summary>
    private void AdjustTreeRefcounts(ulong[] l1, long delta)
    {
        foreach (ulong l1Entry in l1)
        {
            long l2Offset = (long)(l1Entry & L1E_OFFSET_MASK);
            if (l2Offset == 0)
            {
                continue;
            }
            ulong[] table = LoadL2(l2Offset);
            foreach (ulong entry in table)
            {
                if ((entry & QCOW_OFLAG_COMPRESSED) != 0)
                {
                    (long offset, long length) = CompressedRange(entry);
                    long sectorStart = offset & ~(long)(CompressedSectorSizeBytes - 1);
                    for (long c = sectorStart >> _clusterBits; c <= (sectorStart + length - 1) >> _clusterBits; c++)
                    {
                        _refcounts!.Adjust(c, delta);
                    }
                }
                else if ((entry & L2E_OFFSET_MASK) != 0)
                {
                    _refcounts!.Adjust((long)(entry & L2E_OFFSET_MASK) >> _clusterBits, delta);
                }
            }
            _refcounts!.Adjust(l2Offset >> _clusterBits, delta);
        }
    }

    /// <summary>
    /// Makes QCOW_OFLAG_COPIED in the active L1 and its L2 tables say exactly "refcount is 1"
    /// (what qemu-img check verifies). With <paramref name="clearAll"/> every flag is cleared instead.
    /// </summary>
    private void SetCopiedFlagsFromRefcounts(bool clearAll)
    {
        bool l1Changed = false;
        for (long i = 0; i < _l1.Length; i++)
        {
            long l2Offset = (long)(_l1[i] & L1E_OFFSET_MASK);
            if (l2Offset == 0)
            {
                continue;
            }
            ulong[] table = LoadL2(l2Offset);
            bool changed = false;
            for (int j = 0; j < table.Length; j++)
            {
                ulong entry = table[j];
                if ((entry & QCOW_OFLAG_COMPRESSED) != 0 || (entry & L2E_OFFSET_MASK) == 0)
                {
                    continue;
                }
                bool want = !clearAll && _refcounts!.Get((long)(entry & L2E_OFFSET_MASK) >> _clusterBits) == 1;
                ulong updated = want ? entry | QCOW_OFLAG_COPIED : entry & ~QCOW_OFLAG_COPIED;
                if (updated != entry)
                {
                    table[j] = updated;
                    changed = true;
                }
            }
            if (changed)
            {
                _file.Write(l2Offset, SerializeTable(table, _clusterSize));
            }
            bool wantL1 = !clearAll && _refcounts!.Get(l2Offset >> _clusterBits) == 1;
            ulong l1Updated = wantL1 ? _l1[i] | QCOW_OFLAG_COPIED : _l1[i] & ~QCOW_OFLAG_COPIED;
            if (l1Updated != _l1[i])
            {
                _l1[i] = l1Updated;
                l1Changed = true;
            }
        }
        if (l1Changed && _l1.Length > 0)
        {
            _file.Write((long)_header.L1TableOffset, SerializeTable(_l1, _l1.LongLength * 8));
        }
    }

    // ---------------------------------------------------------------- lifetime

    private void ThrowIfDisposed()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            try
            {
                if (!ReadOnly)
                {
                    _file.DataSync();
                }
            }
            finally
            {
                _file.Dispose();
                _backing?.Dispose();
            }
        }
    }
}
