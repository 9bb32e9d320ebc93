using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

// Cluster allocation for a request and the deferred release of clusters it stopped referencing.
public sealed partial class Qcow2Image
{
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

    /// <summary>Drops the references an L2 entry held; call only after the entry was overwritten.</summary>
    private void ReleaseClusters(ulong oldEntry)
    {
        if (HasAllocation(oldEntry))
        {
            _pendingReleases.Add(oldEntry);
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
}
