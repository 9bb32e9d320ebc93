using System.Buffers.Binary;
using System.Text;
using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

// Internal snapshots (qcow2 spec, "Snapshots"): create, list, revert, delete. The tree walks they
// rely on (validation, refcount changes, COPIED flags) are in Qcow2Image.SnapshotTree.cs.
//
// Crash safety, as in QEMU: every operation first writes the structures it will switch to (new
// snapshot table, new L1 table, raised refcounts), syncs, then switches with one small header write
// (nb_snapshots + snapshots_offset, or size + l1_size + l1_table_offset), syncs, and only then drops
// what the old state alone used. A crash before the switch leaves the old state plus leaked clusters;
// a crash after it leaves the new state plus leaked clusters ('qemu-img check -r leaks' reclaims them).
// QCOW_OFLAG_COPIED is never left set on a cluster a published snapshot shares.
public sealed partial class Qcow2Image : ISnapshotableBlockBackend
{
    /// <summary>Creates a snapshot with the next free numeric ID, as <c>qemu-img snapshot -c NAME</c> does.</summary>
    public DiskSnapshotInfo CreateSnapshot(string name) => CreateSnapshotCore(null, name, 0, 0);

    /// <inheritdoc/>
    public DiskSnapshotInfo CreateSnapshot(string id, string name, ulong vmClockNs = 0, ulong vmStateSizeBytes = 0)
    {
        ArgumentNullException.ThrowIfNull(id);
        return CreateSnapshotCore(id, name, vmClockNs, vmStateSizeBytes);
    }

    /// <inheritdoc/>
    public IReadOnlyList<DiskSnapshotInfo> ListSnapshots()
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            return _snapshots.Select(s => s.ToInfo()).ToList();
        }
    }

    /// <inheritdoc/>
    public DiskSnapshotInfo? FindSnapshot(string idOrName)
    {
        ArgumentNullException.ThrowIfNull(idOrName);
        lock (_lock)
        {
            ThrowIfDisposed();
            return FindEntry(idOrName)?.ToInfo();
        }
    }

    /// <inheritdoc/>
    public bool HasSnapshot(string idOrName) => FindSnapshot(idOrName) is not null;

    /// <inheritdoc/>
    public void RevertToSnapshot(string idOrName)
    {
        ArgumentNullException.ThrowIfNull(idOrName);
        lock (_lock)
        {
            ThrowIfDisposed();
            if (ReadOnly)
            {
                throw new DiskImageReadOnlyException(Path, $"revert to snapshot '{idOrName}'");
            }
            var snapshot = FindEntryOrThrow(idOrName);
            string what = $"snapshot '{snapshot.Id}'";
            ulong[] snapshotL1 = ReadL1Table(snapshot.L1TableOffset, snapshot.L1Size, $"L1 table of {what}");
            if (snapshot.DiskSizeBytes > long.MaxValue / 2)
            {
                throw new ImageCorruptException(Path, $"qcow2 image '{Path}': {what} records an absurd disk size of {snapshot.DiskSizeBytes} bytes.");
            }
            // The active L1 must cover the snapshot's disk size even if its own L1 was shorter.
            long newL1Length = Math.Max(snapshotL1.LongLength, RequiredL1Entries(snapshot.DiskSizeBytes));
            if (newL1Length * 8 > QCOW_MAX_L1_SIZE_BYTES)
            {
                throw new ImageCorruptException(Path, $"qcow2 image '{Path}': {what} needs an L1 table of {newL1Length} entries, over the {QCOW_MAX_L1_SIZE_BYTES >> 20} MiB limit.");
            }
            var newL1 = new ulong[newL1Length];
            for (int i = 0; i < snapshotL1.Length; i++)
            {
                // Everything the new active table reaches is shared with the snapshot: no COPIED flags.
                newL1[i] = snapshotL1[i] & ~QCOW_OFLAG_COPIED;
            }
            // Validate both trees before changing anything.
            CheckTree(newL1, +1, what);
            CheckTree(_l1, -1, "the active disk");

            // 1. References for the new state; the new active L1 in fresh clusters.
            AdjustTreeRefcounts(newL1, +1);
            long newL1Bytes = newL1.LongLength * 8;
            long newL1Offset = 0;
            if (newL1.Length > 0)
            {
                newL1Offset = _refcounts!.Allocate(ClustersFor(newL1Bytes));
                _file.Write(newL1Offset, SerializeTable(newL1, ClustersFor(newL1Bytes) * _clusterSize));
            }
            Barrier();

            // 2. Switch: size, crypt_method (unchanged), l1_size and l1_table_offset are adjacent
            //    header fields, written in one 24-byte write.
            Span<byte> fields = stackalloc byte[OffsetL1TableOffset + 8 - OffsetSize];
            BinaryPrimitives.WriteUInt64BigEndian(fields, snapshot.DiskSizeBytes);
            BinaryPrimitives.WriteUInt32BigEndian(fields[(OffsetCryptMethod - OffsetSize)..], _header.CryptMethod);
            BinaryPrimitives.WriteUInt32BigEndian(fields[(OffsetL1Size - OffsetSize)..], (uint)newL1.Length);
            BinaryPrimitives.WriteUInt64BigEndian(fields[(OffsetL1TableOffset - OffsetSize)..], (ulong)newL1Offset);
            _file.Write(OffsetSize, fields);
            ulong[] oldL1 = _l1;
            long oldL1Offset = (long)_header.L1TableOffset;
            _header.SizeBytes = snapshot.DiskSizeBytes;
            _header.L1Size = (uint)newL1.Length;
            _header.L1TableOffset = (ulong)newL1Offset;
            _l1 = newL1;
            Barrier();

            // 3. Drop what the old state used; clusters now used once get their COPIED flag back.
            AdjustTreeRefcounts(oldL1, -1);
            if (oldL1.Length > 0)
            {
                _refcounts!.Free(oldL1Offset, oldL1.LongLength * 8);
            }
            SetCopiedFlagsFromRefcounts();
            Barrier();
        }
    }

    /// <inheritdoc/>
    public void DeleteSnapshot(string idOrName)
    {
        ArgumentNullException.ThrowIfNull(idOrName);
        lock (_lock)
        {
            ThrowIfDisposed();
            if (ReadOnly)
            {
                throw new DiskImageReadOnlyException(Path, $"delete snapshot '{idOrName}'");
            }
            var snapshot = FindEntryOrThrow(idOrName);
            string what = $"snapshot '{snapshot.Id}'";
            ulong[] snapshotL1 = ReadL1Table(snapshot.L1TableOffset, snapshot.L1Size, $"L1 table of {what}");
            CheckTree(snapshotL1, -1, what);
            CheckRefcountsAtLeastOne((long)snapshot.L1TableOffset, (long)snapshot.L1Size * 8, $"the L1 table of {what}");

            // Unpublish first; from then on the snapshot's clusters are only over-counted (leaks).
            WriteSnapshotTable(_snapshots.Where(s => !ReferenceEquals(s, snapshot)).ToList());
            AdjustTreeRefcounts(snapshotL1, -1);
            if (snapshot.L1Size > 0)
            {
                _refcounts!.Free((long)snapshot.L1TableOffset, (long)snapshot.L1Size * 8);
            }
            SetCopiedFlagsFromRefcounts();
            Barrier();
        }
    }

    private DiskSnapshotInfo CreateSnapshotCore(string? id, string name, ulong vmClockNs, ulong vmStateSizeBytes)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_lock)
        {
            ThrowIfDisposed();
            if (ReadOnly)
            {
                throw new DiskImageReadOnlyException(Path, $"create snapshot '{id ?? name}'");
            }
            if (id is not null)
            {
                CheckSnapshotString(id, nameof(id), "ID");
            }
            CheckSnapshotString(name, nameof(name), "name");
            // IDs and names share one lookup ("ID or name"), so neither may collide with either.
            foreach (var s in _snapshots)
            {
                foreach (string wanted in id is null ? [name] : new[] { id, name })
                {
                    if (s.Id == wanted || s.Name == wanted)
                    {
                        throw new DiskSnapshotExistsException(Path, wanted, s.Id, s.Name);
                    }
                }
            }
            if (_snapshots.Count >= QCOW_MAX_SNAPSHOTS)
            {
                throw new DiskSnapshotException(Path, id ?? name, $"qcow2 image '{Path}' already has the maximum of {QCOW_MAX_SNAPSHOTS} snapshots; cannot create snapshot '{id ?? name}'.");
            }
            id ??= NextSnapshotId(name);
            CheckTree(_l1, +1, "the active disk");

            long l1Bytes = _l1.LongLength * 8;
            long snapshotL1Offset = 0;
            var entry = Qcow2SnapshotEntry.CreateNew(id, name, 0, (uint)_l1.Length, SizeBytes, vmClockNs, vmStateSizeBytes);
            var updated = new List<Qcow2SnapshotEntry>(_snapshots) { entry };
            if (Qcow2SnapshotEntry.TableSizeBytes(updated) > QCOW_MAX_SNAPSHOTS_SIZE)
            {
                throw new DiskSnapshotException(Path, id, $"qcow2 image '{Path}': snapshot '{id}' would grow the snapshot table beyond {QCOW_MAX_SNAPSHOTS_SIZE >> 20} MiB; use shorter IDs and names or delete snapshots.");
            }

            // 1. The snapshot's copy of the active L1 (COPIED flags mean nothing outside the active table).
            if (_l1.Length > 0)
            {
                snapshotL1Offset = _refcounts!.Allocate(ClustersFor(l1Bytes));
                _file.Write(snapshotL1Offset, SerializeTable(_l1.Select(e => e & ~QCOW_OFLAG_COPIED).ToArray(), ClustersFor(l1Bytes) * _clusterSize));
            }
            // 2. One more reference to everything reachable, then COPIED cleared wherever that made a
            //    cluster shared, so the next guest write to it copies on write.
            AdjustTreeRefcounts(_l1, +1);
            SetCopiedFlagsFromRefcounts();
            Barrier();
            // 3. Publish.
            entry = entry with { L1TableOffset = (ulong)snapshotL1Offset };
            updated[^1] = entry;
            WriteSnapshotTable(updated);
            Barrier();
            return entry.ToInfo();
        }
    }

    private static void CheckSnapshotString(string value, string paramName, string what)
    {
        if (value.Length == 0 || Encoding.UTF8.GetByteCount(value) > ushort.MaxValue)
        {
            throw new ArgumentException($"Snapshot {what} '{(value.Length > 64 ? value[..64] + "..." : value)}' must be non-empty and at most {ushort.MaxValue} UTF-8 bytes.", paramName);
        }
    }

    /// <summary>By ID first, then by name (QEMU's order).</summary>
    private Qcow2SnapshotEntry? FindEntry(string idOrName) =>
        _snapshots.FirstOrDefault(s => s.Id == idOrName) ?? _snapshots.FirstOrDefault(s => s.Name == idOrName);

    private Qcow2SnapshotEntry FindEntryOrThrow(string idOrName) =>
        FindEntry(idOrName) ?? throw new DiskSnapshotNotFoundException(Path, idOrName, _snapshots.Select(s => s.Id).ToList());

    /// <summary>One more than the largest numeric ID (QEMU's rule), skipping values used as names.</summary>
    private string NextSnapshotId(string newName)
    {
        long max = 0;
        foreach (var s in _snapshots)
        {
            if (long.TryParse(s.Id, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n) && n > max)
            {
                max = n;
            }
        }
        while (true)
        {
            string candidate = (++max).ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (candidate != newName && !_snapshots.Any(s => s.Id == candidate || s.Name == candidate))
            {
                return candidate;
            }
        }
    }

    private long RequiredL1Entries(ulong diskSizeBytes)
    {
        long clusters = (long)((diskSizeBytes + (ulong)_clusterSize - 1) >> _clusterBits);
        return (clusters + _l2Entries - 1) / _l2Entries;
    }
}
