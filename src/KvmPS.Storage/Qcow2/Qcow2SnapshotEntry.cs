using System.Buffers.Binary;
using System.Text;
using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

/// <summary>One snapshot table entry in its on-disk layout (unknown extra data preserved).</summary>
internal sealed record Qcow2SnapshotEntry
{
    private const int FixedPartBytes = 40;
    // Extra data we write, as QEMU does: vm_state_size_large, disk_size, icount.
    private const int CreatedExtraDataBytes = 24;
    private const ulong IcountDisabled = ulong.MaxValue; // spec: -1 when icount was not in use

    public ulong L1TableOffset { get; init; }
    public uint L1Size { get; init; }
    public required string Id { get; init; }
    public required string Name { get; init; }
    public uint DateSeconds { get; init; }
    public uint DateNanoseconds { get; init; }
    public ulong VmClockNanoseconds { get; init; }
    public ulong VmStateSizeBytes { get; init; }
    public ulong DiskSizeBytes { get; init; }
    public required byte[] ExtraData { get; init; }

    public DiskSnapshotInfo ToInfo() => new(Id, Name,
        DateTime.UnixEpoch.AddSeconds(DateSeconds).AddTicks(Math.Min(DateNanoseconds, 999_999_999u) / 100),
        VmClockNanoseconds, DiskSizeBytes, VmStateSizeBytes);

    public static Qcow2SnapshotEntry CreateNew(string id, string name, ulong l1Offset, uint l1Size, ulong diskSizeBytes,
        ulong vmClockNs, ulong vmStateSizeBytes)
    {
        var now = DateTimeOffset.UtcNow;
        long ticksIntoSecond = now.UtcTicks % TimeSpan.TicksPerSecond;
        var extra = new byte[CreatedExtraDataBytes];
        BinaryPrimitives.WriteUInt64BigEndian(extra.AsSpan(0), vmStateSizeBytes); // vm_state_size_large
        BinaryPrimitives.WriteUInt64BigEndian(extra.AsSpan(8), diskSizeBytes);    // disk_size
        BinaryPrimitives.WriteUInt64BigEndian(extra.AsSpan(16), IcountDisabled);  // icount
        return new Qcow2SnapshotEntry
        {
            L1TableOffset = l1Offset,
            L1Size = l1Size,
            Id = id,
            Name = name,
            DateSeconds = (uint)now.ToUnixTimeSeconds(),
            DateNanoseconds = (uint)(ticksIntoSecond * 100),
            VmClockNanoseconds = vmClockNs,
            VmStateSizeBytes = vmStateSizeBytes,
            DiskSizeBytes = diskSizeBytes,
            ExtraData = extra,
        };
    }

    /// <summary>
    /// Parses the header's nb_snapshots entries at snapshots_offset. Every length is checked against
    /// the file and the table against QCOW_MAX_SNAPSHOTS_SIZE before anything is allocated, so a hostile
    /// table costs at most what the file itself holds.
    /// </summary>
    public static List<Qcow2SnapshotEntry> ReadTable(ImageFile file, Qcow2Header header, out long tableSizeBytes)
    {
        var entries = new List<Qcow2SnapshotEntry>();
        long offset = (long)header.SnapshotsOffset;
        long fileLength = file.LengthBytes;
        long clusterSize = header.ClusterSizeBytes;
        Span<byte> fixedPart = stackalloc byte[FixedPartBytes];
        for (uint i = 0; i < header.NbSnapshots; i++)
        {
            if (offset + FixedPartBytes > fileLength)
            {
                throw new ImageCorruptException(file.Path, $"qcow2 image '{file.Path}': snapshot table entry {i} at offset {offset} extends beyond the end of the file.", (ulong)offset);
            }
            file.Read(offset, fixedPart);
            ulong l1Offset = BinaryPrimitives.ReadUInt64BigEndian(fixedPart);
            uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[8..]);
            int idLength = BinaryPrimitives.ReadUInt16BigEndian(fixedPart[12..]);
            int nameLength = BinaryPrimitives.ReadUInt16BigEndian(fixedPart[14..]);
            uint dateSeconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[16..]);
            uint dateNanoseconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[20..]);
            ulong vmClock = BinaryPrimitives.ReadUInt64BigEndian(fixedPart[24..]);
            ulong vmStateSize = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[32..]);
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[36..]);
            if (extraSize > QCOW_MAX_SNAPSHOT_EXTRA_DATA)
            {
                throw new ImageCorruptException(file.Path, $"qcow2 image '{file.Path}': snapshot table entry {i} has {extraSize} bytes of extra data (maximum {QCOW_MAX_SNAPSHOT_EXTRA_DATA}).", (ulong)offset);
            }
            long variableLength = extraSize + idLength + nameLength;
            if (offset + FixedPartBytes + variableLength > fileLength)
            {
                throw new ImageCorruptException(file.Path, $"qcow2 image '{file.Path}': snapshot table entry {i} at offset {offset} is truncated by the end of the file.", (ulong)offset);
            }
            var variable = new byte[variableLength];
            file.Read(offset + FixedPartBytes, variable);
            var extra = variable.AsSpan(0, (int)extraSize).ToArray();
            ulong diskSize = header.SizeBytes;
            if (extraSize >= 8)
            {
                vmStateSize = BinaryPrimitives.ReadUInt64BigEndian(extra);
            }
            if (extraSize >= 16)
            {
                diskSize = BinaryPrimitives.ReadUInt64BigEndian(extra.AsSpan(8));
            }
            if (l1Size > 0)
            {
                Qcow2Header.CheckTableLocation(file.Path, $"L1 table of snapshot {i}", l1Offset, (ulong)l1Size * 8, clusterSize, fileLength, offset);
            }
            if ((ulong)l1Size * 8 > QCOW_MAX_L1_SIZE_BYTES)
            {
                throw new ImageCorruptException(file.Path, $"qcow2 image '{file.Path}': snapshot {i} has an oversized L1 table ({l1Size} entries).", (ulong)offset);
            }
            entries.Add(new Qcow2SnapshotEntry
            {
                L1TableOffset = l1Offset,
                L1Size = l1Size,
                Id = Encoding.UTF8.GetString(variable, (int)extraSize, idLength),
                Name = Encoding.UTF8.GetString(variable, (int)extraSize + idLength, nameLength),
                DateSeconds = dateSeconds,
                DateNanoseconds = dateNanoseconds,
                VmClockNanoseconds = vmClock,
                VmStateSizeBytes = vmStateSize,
                DiskSizeBytes = diskSize,
                ExtraData = extra,
            });
            offset += Align8(FixedPartBytes + variableLength);
            if (offset - (long)header.SnapshotsOffset > QCOW_MAX_SNAPSHOTS_SIZE)
            {
                throw new ImageCorruptException(file.Path,
                    $"qcow2 image '{file.Path}': the snapshot table is larger than {QCOW_MAX_SNAPSHOTS_SIZE >> 20} MiB (at entry {i} of {header.NbSnapshots}).", header.SnapshotsOffset);
            }
        }
        tableSizeBytes = offset - (long)header.SnapshotsOffset;
        CheckL1TablesAvoidMetadata(file.Path, header, entries, tableSizeBytes);
        return entries;
    }

    /// <summary>
    /// A snapshot L1 table on top of the header, the active L1, the refcount table or the snapshot
    /// table itself would have deleting the snapshot free live metadata: refuse such images at open.
    /// </summary>
    private static void CheckL1TablesAvoidMetadata(string path, Qcow2Header header, List<Qcow2SnapshotEntry> entries, long tableSizeBytes)
    {
        long clusterSize = header.ClusterSizeBytes;
        var metadata = new (string What, long Offset, long Length)[]
        {
            ("the header", 0, clusterSize),
            ("the active L1 table", (long)header.L1TableOffset, (long)header.L1Size * 8),
            ("the refcount table", (long)header.RefcountTableOffset, header.RefcountTableClusters * clusterSize),
            ("the snapshot table", (long)header.SnapshotsOffset, tableSizeBytes),
        };
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            if (e.L1Size == 0)
            {
                continue;
            }
            long start = (long)e.L1TableOffset, end = start + (long)e.L1Size * 8;
            foreach (var (what, offset, length) in metadata)
            {
                if (length > 0 && start < offset + length && offset < end)
                {
                    throw new ImageCorruptException(path,
                        $"qcow2 image '{path}': the L1 table of snapshot {i} (ID '{e.Id}') at offset {start} overlaps {what}.", e.L1TableOffset);
                }
            }
        }
    }

    /// <summary>On-disk size of a table holding <paramref name="entries"/>.</summary>
    public static long TableSizeBytes(IReadOnlyList<Qcow2SnapshotEntry> entries) =>
        entries.Sum(e => Align8(FixedPartBytes + e.ExtraData.Length + Encoding.UTF8.GetByteCount(e.Id) + Encoding.UTF8.GetByteCount(e.Name)));

    public static byte[] SerializeTable(IReadOnlyList<Qcow2SnapshotEntry> entries)
    {
        var output = new MemoryStream();
        foreach (var e in entries)
        {
            byte[] id = Encoding.UTF8.GetBytes(e.Id);
            byte[] name = Encoding.UTF8.GetBytes(e.Name);
            var buffer = new byte[Align8(FixedPartBytes + e.ExtraData.Length + id.Length + name.Length)];
            var span = buffer.AsSpan();
            BinaryPrimitives.WriteUInt64BigEndian(span, e.L1TableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(span[8..], e.L1Size);
            BinaryPrimitives.WriteUInt16BigEndian(span[12..], (ushort)id.Length);
            BinaryPrimitives.WriteUInt16BigEndian(span[14..], (ushort)name.Length);
            BinaryPrimitives.WriteUInt32BigEndian(span[16..], e.DateSeconds);
            BinaryPrimitives.WriteUInt32BigEndian(span[20..], e.DateNanoseconds);
            BinaryPrimitives.WriteUInt64BigEndian(span[24..], e.VmClockNanoseconds);
            BinaryPrimitives.WriteUInt32BigEndian(span[32..], (uint)Math.Min(e.VmStateSizeBytes, uint.MaxValue));
            BinaryPrimitives.WriteUInt32BigEndian(span[36..], (uint)e.ExtraData.Length);
            e.ExtraData.CopyTo(span[FixedPartBytes..]);
            id.CopyTo(span[(FixedPartBytes + e.ExtraData.Length)..]);
            name.CopyTo(span[(FixedPartBytes + e.ExtraData.Length + id.Length)..]);
            output.Write(buffer);
        }
        return output.ToArray();
    }

    private static long Align8(long n) => (n + 7) & ~7L;
}
