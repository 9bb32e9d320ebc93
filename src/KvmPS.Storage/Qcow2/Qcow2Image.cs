using System.Buffers.Binary;
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
public sealed partial class Qcow2Image : IBlockBackend
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

    // Opened for snapshot management without its backing chain: guest I/O would read wrong data.
    private readonly bool _metadataOnly;

    private Qcow2Image(ImageFile file, Qcow2Header header, IBlockBackend? backing)
    {
        _file = file;
        _header = header;
        _backing = backing;
        _metadataOnly = header.BackingFileName is not null && backing is null;
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

    internal ImageFile File => _file;

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

    /// <summary>
    /// Opens a qcow2 image on an already opened (and locked) file. <paramref name="openBacking"/> is
    /// called with the parsed header when the image names a backing file; it owns loop detection.
    /// When it returns null the image is open for metadata (snapshot management) only.
    /// </summary>
    internal static Qcow2Image Open(ImageFile file, Func<string, string?, IBlockBackend?> openBacking)
    {
        var header = ReadHeader(file);
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

    /// <summary>The header of the image in <paramref name="file"/> (read from its first cluster; nothing written).</summary>
    internal static Qcow2Header ReadHeader(ImageFile file)
    {
        var probe = new byte[Math.Min(file.LengthBytes, 1L << MAX_CLUSTER_BITS)];
        file.Read(0, probe);
        int clusterBits = probe.Length >= OffsetClusterBits + 4
            ? (int)BinaryPrimitives.ReadUInt32BigEndian(probe.AsSpan(OffsetClusterBits))
            : MIN_CLUSTER_BITS;
        int firstClusterLength = (clusterBits >= MIN_CLUSTER_BITS && clusterBits <= MAX_CLUSTER_BITS)
            ? (int)Math.Min(probe.Length, 1L << clusterBits)
            : probe.Length;
        return Qcow2Header.Parse(file.Path, probe.AsSpan(0, firstClusterLength), file.LengthBytes, readOnly: !file.Writable);
    }

    private void Barrier()
    {
        if (StrictMetadataOrdering)
        {
            _file.DataSync();
        }
    }

    private void WriteHeaderUInt64(int fieldOffset, ulong value)
    {
        Span<byte> be = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(be, value);
        _file.Write(fieldOffset, be);
    }

    private void ThrowIfDisposed()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
    }

    private void ThrowIfNoGuestIo()
    {
        ThrowIfDisposed();
        if (_metadataOnly)
        {
            throw new InvalidOperationException($"qcow2 image '{Path}' was opened without its backing file '{_header.BackingFileName}', for snapshot management only; guest I/O is not possible.");
        }
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
