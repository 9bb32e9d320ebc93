using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

// Guest writes, discards and zeroing, including copy-on-write of shared, compressed and backing-file clusters.
public sealed partial class Qcow2Image
{
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            ThrowIfNoGuestIo();
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
            ThrowIfNoGuestIo();
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
            ThrowIfNoGuestIo();
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
}
