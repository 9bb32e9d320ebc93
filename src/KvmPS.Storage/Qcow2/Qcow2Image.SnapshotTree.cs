using System.Buffers.Binary;
using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

// Walks over a whole L1 tree for snapshot operations: validation before any change, refcount
// changes, QCOW_OFLAG_COPIED upkeep, and the snapshot table switch.
//
// Refcount rule (the one qemu-img check verifies): a data cluster's refcount is the number of L1
// tables (active + snapshots) that reach it, and an L2 table's refcount is the number of L1 tables
// that point at it. A shared L2 table therefore raises its data clusters once per L1, not once.
public sealed partial class Qcow2Image
{
    /// <summary>
    /// Checks that every cluster <paramref name="l1"/> reaches is a plausible L2 or data cluster (aligned,
    /// inside the file, not image metadata) whose refcount can move by <paramref name="delta"/>. Done
    /// before an operation writes anything, so a corrupt or hostile tree is refused with the image unchanged.
    /// </summary>
    private void CheckTree(ulong[] l1, int delta, string what)
    {
        HashSet<long> metadata = MetadataClusters();
        long fileLength = _file.LengthBytes;
        for (long i = 0; i < l1.Length; i++)
        {
            long l2Offset = (long)(l1[i] & L1E_OFFSET_MASK);
            if (l2Offset == 0)
            {
                continue;
            }
            CheckTreeCluster(l2Offset >> _clusterBits, delta, metadata, $"{what}: the L2 table of L1 entry {i}");
            ulong[] table = LoadL2(l2Offset); // checks alignment and bounds
            for (long j = 0; j < table.Length; j++)
            {
                ulong entry = table[j];
                if ((entry & QCOW_OFLAG_COMPRESSED) != 0)
                {
                    (long offset, long length) = CompressedRange(entry);
                    if (offset >= fileLength)
                    {
                        throw new ImageCorruptException(Path,
                            $"qcow2 image '{Path}': {what}: compressed cluster {i * _l2Entries + j} at offset {offset} lies beyond the end of the file ({fileLength} bytes).", (ulong)offset);
                    }
                    long sectorStart = offset & ~(long)(CompressedSectorSizeBytes - 1);
                    for (long c = sectorStart >> _clusterBits; c <= (sectorStart + length - 1) >> _clusterBits; c++)
                    {
                        CheckTreeCluster(c, delta, metadata, $"{what}: compressed guest cluster {i * _l2Entries + j}");
                    }
                }
                else if ((entry & L2E_OFFSET_MASK) != 0)
                {
                    long host = (long)(entry & L2E_OFFSET_MASK);
                    CheckDataClusterOffset(i * _l2Entries + j, host);
                    CheckTreeCluster(host >> _clusterBits, delta, metadata, $"{what}: guest cluster {i * _l2Entries + j}");
                }
            }
        }
    }

    private void CheckTreeCluster(long cluster, int delta, HashSet<long> metadata, string what)
    {
        long offset = cluster << _clusterBits;
        if (metadata.Contains(cluster))
        {
            throw new ImageCorruptException(Path,
                $"qcow2 image '{Path}': {what} points at offset {offset}, which holds image metadata (header, L1, refcount or snapshot table).", (ulong)offset);
        }
        ulong refcount = _refcounts!.Get(cluster);
        if (delta > 0 && refcount > _refcounts.MaxRefcount - (ulong)delta)
        {
            throw new ImageCorruptException(Path,
                $"qcow2 image '{Path}': refcount overflow: {what} at offset {offset} already has refcount {refcount}, " +
                $"the maximum for {RefcountBits}-bit refcounts (use an image with wider refcounts for snapshots).", (ulong)offset);
        }
        if (delta < 0 && refcount < (ulong)-delta)
        {
            throw new ImageCorruptException(Path,
                $"qcow2 image '{Path}': refcount underflow: {what} at offset {offset} is in use but has refcount {refcount}.", (ulong)offset);
        }
    }

    private void CheckRefcountsAtLeastOne(long offset, long lengthBytes, string what)
    {
        for (long c = offset >> _clusterBits; lengthBytes > 0 && c <= (offset + lengthBytes - 1) >> _clusterBits; c++)
        {
            if (_refcounts!.Get(c) == 0)
            {
                throw new ImageCorruptException(Path,
                    $"qcow2 image '{Path}': refcount underflow: {what} at offset {c << _clusterBits} is in use but has refcount 0.", (ulong)(c << _clusterBits));
            }
        }
    }

    /// <summary>Clusters holding the header, the active L1, the refcount structures and the snapshot tables.</summary>
    private HashSet<long> MetadataClusters()
    {
        var clusters = new HashSet<long> { 0 };
        void AddRange(long offset, long lengthBytes)
        {
            for (long c = offset >> _clusterBits; lengthBytes > 0 && c <= (offset + lengthBytes - 1) >> _clusterBits; c++)
            {
                clusters.Add(c);
            }
        }
        AddRange((long)_header.L1TableOffset, _l1.LongLength * 8);
        AddRange(_refcounts!.TableOffset, _refcounts.TableClusters * _clusterSize);
        foreach (long block in _refcounts.BlockOffsets())
        {
            clusters.Add(block >> _clusterBits);
        }
        AddRange((long)_header.SnapshotsOffset, _snapshotTableSizeBytes);
        foreach (var s in _snapshots)
        {
            AddRange((long)s.L1TableOffset, (long)s.L1Size * 8);
        }
        return clusters;
    }

    /// <summary>
    /// Writes the table to fresh clusters, syncs, switches the header (nb_snapshots and
    /// snapshots_offset: one 12-byte write), syncs, then frees the old table.
    /// </summary>
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
        }
        Barrier();
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
        Barrier();
        if (oldOffset != 0 && oldSize > 0)
        {
            _refcounts!.Free(oldOffset, oldSize);
        }
    }

    /// <summary>Adds <paramref name="delta"/> to every cluster reachable from an L1 table.</summary>
    private void AdjustTreeRefcounts(ulong[] l1, long delta)
    {
        // One write per refcount block instead of one per cluster; durable at the caller's next barrier.
        _refcounts!.BeginDeferredWrites();
        try
        {
            AdjustTreeRefcountsDeferred(l1, delta);
        }
        finally
        {
            _refcounts.EndDeferredWrites();
        }
    }

    private void AdjustTreeRefcountsDeferred(ulong[] l1, long delta)
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
    /// (what qemu-img check verifies, and what lets the write path write in place).
    /// </summary>
    private void SetCopiedFlagsFromRefcounts()
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
                bool want = _refcounts!.Get((long)(entry & L2E_OFFSET_MASK) >> _clusterBits) == 1;
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
            bool wantL1 = _refcounts!.Get(l2Offset >> _clusterBits) == 1;
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
}
