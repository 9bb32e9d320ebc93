using System.Buffers.Binary;
using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

// Internal snapshots: the snapshot table, copied L1 tables and the refcount changes they imply.
public sealed partial class Qcow2Image
{
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
}
