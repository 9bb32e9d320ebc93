using System.Buffers.Binary;
using System.Text;
using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

/// <summary>Parsed and validated qcow2 header plus the header extensions we understand.</summary>
internal sealed class Qcow2Header
{
    public uint Version { get; init; }
    public ulong BackingFileOffset { get; init; }
    public uint BackingFileSize { get; init; }
    public int ClusterBits { get; init; }
    public ulong SizeBytes { get; set; }
    public uint CryptMethod { get; init; }
    public uint L1Size { get; set; }
    public ulong L1TableOffset { get; set; }
    public ulong RefcountTableOffset { get; set; }
    public uint RefcountTableClusters { get; set; }
    public uint NbSnapshots { get; set; }
    public ulong SnapshotsOffset { get; set; }
    public ulong IncompatibleFeatures { get; init; }
    public ulong CompatibleFeatures { get; init; }
    public ulong AutoclearFeatures { get; set; }
    public int RefcountOrder { get; init; }
    public uint HeaderLength { get; init; }
    public byte CompressionType { get; init; }
    public string? BackingFileName { get; init; }
    public string? BackingFormat { get; init; }

    public long ClusterSizeBytes => 1L << ClusterBits;

    /// <summary>Parses and validates; <paramref name="fileLengthBytes"/> bounds every offset.</summary>
    public static Qcow2Header Parse(string path, ReadOnlySpan<byte> firstCluster, long fileLengthBytes, bool readOnly)
    {
        if (firstCluster.Length < 8 || BinaryPrimitives.ReadUInt32BigEndian(firstCluster) != QCOW_MAGIC)
        {
            throw new ImageCorruptException(path, $"'{path}' is not a qcow2 image (bad magic; expected \"QFI\\xfb\").", 0);
        }
        uint version = BinaryPrimitives.ReadUInt32BigEndian(firstCluster[OffsetVersion..]);
        if (version != 2 && version != 3)
        {
            throw new UnsupportedImageFeatureException(path, $"qcow2 version {version}",
                $"qcow2 image '{path}' has unsupported version {version} (only versions 2 and 3 are supported).");
        }
        if (firstCluster.Length < V2_HEADER_LENGTH)
        {
            throw new ImageCorruptException(path, $"qcow2 image '{path}' is truncated: the header needs {V2_HEADER_LENGTH} bytes but the file has {firstCluster.Length}.", 0);
        }
        var h = firstCluster;
        int clusterBits = (int)BinaryPrimitives.ReadUInt32BigEndian(h[OffsetClusterBits..]);
        if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS)
        {
            throw new ImageCorruptException(path,
                $"qcow2 image '{path}' has cluster_bits {clusterBits}, outside the supported range {MIN_CLUSTER_BITS}..{MAX_CLUSTER_BITS}.", OffsetClusterBits);
        }
        long clusterSize = 1L << clusterBits;

        uint headerLength = V2_HEADER_LENGTH;
        ulong incompatible = 0, compatible = 0, autoclear = 0;
        int refcountOrder = DEFAULT_REFCOUNT_ORDER;
        byte compressionType = 0;
        if (version == 3)
        {
            if (h.Length < V3_MIN_HEADER_LENGTH)
            {
                throw new ImageCorruptException(path, $"qcow2 v3 image '{path}' is truncated: the header needs {V3_MIN_HEADER_LENGTH} bytes.", 0);
            }
            incompatible = BinaryPrimitives.ReadUInt64BigEndian(h[OffsetIncompatibleFeatures..]);
            compatible = BinaryPrimitives.ReadUInt64BigEndian(h[OffsetCompatibleFeatures..]);
            autoclear = BinaryPrimitives.ReadUInt64BigEndian(h[OffsetAutoclearFeatures..]);
            refcountOrder = (int)BinaryPrimitives.ReadUInt32BigEndian(h[OffsetRefcountOrder..]);
            headerLength = BinaryPrimitives.ReadUInt32BigEndian(h[OffsetHeaderLength..]);
            if (headerLength < V3_MIN_HEADER_LENGTH || headerLength % 8 != 0 || headerLength > clusterSize || headerLength > h.Length)
            {
                throw new ImageCorruptException(path,
                    $"qcow2 image '{path}' has invalid header_length {headerLength} (must be >= {V3_MIN_HEADER_LENGTH}, a multiple of 8 and fit in the first cluster).", OffsetHeaderLength);
            }
            if (refcountOrder > MAX_REFCOUNT_ORDER || refcountOrder < 0)
            {
                throw new ImageCorruptException(path, $"qcow2 image '{path}' has refcount_order {refcountOrder}; the maximum is {MAX_REFCOUNT_ORDER}.", OffsetRefcountOrder);
            }
            if (headerLength > OffsetCompressionType)
            {
                compressionType = h[OffsetCompressionType];
            }
        }

        var feature = new FeatureNames();
        string? backingFormat = null;
        bool hasDataFileExtension = false;
        ParseExtensions(path, h[..(int)Math.Min(clusterSize, h.Length)], (int)headerLength, feature, ref backingFormat, ref hasDataFileExtension);

        CheckIncompatibleFeatures(path, incompatible, compressionType, readOnly, feature);

        uint cryptMethod = BinaryPrimitives.ReadUInt32BigEndian(h[OffsetCryptMethod..]);
        if (cryptMethod != 0)
        {
            throw new UnsupportedImageFeatureException(path, "encryption",
                $"qcow2 image '{path}' is encrypted (crypt_method {cryptMethod}); encrypted images are not supported.");
        }

        ulong size = BinaryPrimitives.ReadUInt64BigEndian(h[OffsetSize..]);
        if (size > long.MaxValue / 2)
        {
            throw new ImageCorruptException(path, $"qcow2 image '{path}' has an absurd virtual size of {size} bytes.", OffsetSize);
        }

        ulong backingOffset = BinaryPrimitives.ReadUInt64BigEndian(h[OffsetBackingFileOffset..]);
        uint backingSize = BinaryPrimitives.ReadUInt32BigEndian(h[OffsetBackingFileSize..]);
        string? backingName = null;
        if (backingOffset != 0)
        {
            if (backingSize > MAX_BACKING_FILE_NAME_BYTES)
            {
                throw new ImageCorruptException(path, $"qcow2 image '{path}' has a backing file name of {backingSize} bytes; the maximum is {MAX_BACKING_FILE_NAME_BYTES}.", OffsetBackingFileSize);
            }
            if (backingOffset + backingSize > (ulong)clusterSize || backingOffset + backingSize > (ulong)h.Length)
            {
                throw new ImageCorruptException(path, $"qcow2 image '{path}': the backing file name at offset {backingOffset} (+{backingSize}) lies outside the first cluster or the file.", OffsetBackingFileOffset);
            }
            backingName = Encoding.UTF8.GetString(h.Slice((int)backingOffset, (int)backingSize));
            if (backingName.Length == 0)
            {
                backingName = null;
            }
        }

        uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(h[OffsetL1Size..]);
        ulong l1Offset = BinaryPrimitives.ReadUInt64BigEndian(h[OffsetL1TableOffset..]);
        long l2Entries = clusterSize / 8;
        ulong guestClusters = (size + (ulong)clusterSize - 1) >> clusterBits;
        ulong requiredL1 = (guestClusters + (ulong)l2Entries - 1) / (ulong)l2Entries;
        if ((ulong)l1Size * 8 > QCOW_MAX_L1_SIZE_BYTES)
        {
            throw new ImageCorruptException(path, $"qcow2 image '{path}' has an L1 table of {l1Size} entries, larger than the {QCOW_MAX_L1_SIZE_BYTES >> 20} MiB limit.", OffsetL1Size);
        }
        if (l1Size < requiredL1)
        {
            throw new ImageCorruptException(path, $"qcow2 image '{path}' has an L1 table of {l1Size} entries, too small for its virtual size of {size} bytes (needs {requiredL1}).", OffsetL1Size);
        }
        if (l1Size > 0)
        {
            CheckTableLocation(path, "L1 table", l1Offset, (ulong)l1Size * 8, clusterSize, fileLengthBytes, OffsetL1TableOffset);
        }

        ulong refcountTableOffset = BinaryPrimitives.ReadUInt64BigEndian(h[OffsetRefcountTableOffset..]);
        uint refcountTableClusters = BinaryPrimitives.ReadUInt32BigEndian(h[OffsetRefcountTableClusters..]);
        if (refcountTableClusters == 0)
        {
            throw new ImageCorruptException(path, $"qcow2 image '{path}' has an empty refcount table.", OffsetRefcountTableClusters);
        }
        if ((ulong)refcountTableClusters * (ulong)clusterSize > QCOW_MAX_REFTABLE_SIZE_BYTES)
        {
            throw new ImageCorruptException(path, $"qcow2 image '{path}' has a refcount table of {refcountTableClusters} clusters, larger than the {QCOW_MAX_REFTABLE_SIZE_BYTES >> 20} MiB limit.", OffsetRefcountTableClusters);
        }
        CheckTableLocation(path, "refcount table", refcountTableOffset, (ulong)refcountTableClusters * (ulong)clusterSize, clusterSize, fileLengthBytes, OffsetRefcountTableOffset);

        uint nbSnapshots = BinaryPrimitives.ReadUInt32BigEndian(h[OffsetNbSnapshots..]);
        ulong snapshotsOffset = BinaryPrimitives.ReadUInt64BigEndian(h[OffsetSnapshotsOffset..]);
        if (nbSnapshots > QCOW_MAX_SNAPSHOTS)
        {
            throw new ImageCorruptException(path, $"qcow2 image '{path}' claims {nbSnapshots} snapshots; the maximum is {QCOW_MAX_SNAPSHOTS}.", OffsetNbSnapshots);
        }
        if (nbSnapshots > 0)
        {
            CheckTableLocation(path, "snapshot table", snapshotsOffset, 40, clusterSize, fileLengthBytes, OffsetSnapshotsOffset);
        }

        return new Qcow2Header
        {
            Version = version,
            BackingFileOffset = backingOffset,
            BackingFileSize = backingSize,
            ClusterBits = clusterBits,
            SizeBytes = size,
            CryptMethod = cryptMethod,
            L1Size = l1Size,
            L1TableOffset = l1Offset,
            RefcountTableOffset = refcountTableOffset,
            RefcountTableClusters = refcountTableClusters,
            NbSnapshots = nbSnapshots,
            SnapshotsOffset = snapshotsOffset,
            IncompatibleFeatures = incompatible,
            CompatibleFeatures = compatible,
            AutoclearFeatures = autoclear,
            RefcountOrder = refcountOrder,
            HeaderLength = headerLength,
            CompressionType = compressionType,
            BackingFileName = backingName,
            BackingFormat = backingFormat,
        };
    }

    internal static void CheckTableLocation(string path, string what, ulong offset, ulong lengthBytes, long clusterSize,
        long fileLengthBytes, long headerFieldOffset)
    {
        if (offset == 0 || offset % (ulong)clusterSize != 0)
        {
            throw new ImageCorruptException(path, $"qcow2 image '{path}': the {what} offset {offset} is not a non-zero multiple of the cluster size {clusterSize}.", (ulong)headerFieldOffset);
        }
        if (offset > (ulong)fileLengthBytes || lengthBytes > (ulong)fileLengthBytes - offset)
        {
            throw new ImageCorruptException(path, $"qcow2 image '{path}' is truncated: the {what} at offset {offset} (+{lengthBytes} bytes) extends beyond the end of the file ({fileLengthBytes} bytes).", offset);
        }
    }

    private sealed class FeatureNames
    {
        public readonly Dictionary<(int Type, int Bit), string> Names = new();
    }

    private static void ParseExtensions(string path, ReadOnlySpan<byte> cluster, int start, FeatureNames features,
        ref string? backingFormat, ref bool hasDataFile)
    {
        int offset = start;
        while (offset + 8 <= cluster.Length)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(cluster[offset..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(cluster[(offset + 4)..]);
            if (type == QCOW2_EXT_MAGIC_END)
            {
                return;
            }
            if (length > (uint)(cluster.Length - offset - 8))
            {
                throw new ImageCorruptException(path, $"qcow2 image '{path}': header extension 0x{type:x8} at offset {offset} ({length} bytes) overruns the first cluster.", (ulong)offset);
            }
            var data = cluster.Slice(offset + 8, (int)length);
            switch (type)
            {
                case QCOW2_EXT_MAGIC_BACKING_FORMAT:
                    backingFormat = Encoding.UTF8.GetString(data);
                    break;
                case QCOW2_EXT_MAGIC_FEATURE_TABLE:
                    for (int i = 0; i + 48 <= data.Length; i += 48)
                    {
                        var nameBytes = data.Slice(i + 2, 46);
                        int nul = nameBytes.IndexOf((byte)0);
                        features.Names[(data[i], data[i + 1])] = Encoding.UTF8.GetString(nul < 0 ? nameBytes : nameBytes[..nul]);
                    }
                    break;
                case QCOW2_EXT_MAGIC_DATA_FILE:
                    hasDataFile = true;
                    break;
            }
            offset += 8 + (int)((length + 7) & ~7u);
        }
    }

    private static void CheckIncompatibleFeatures(string path, ulong incompatible, byte compressionType, bool readOnly, FeatureNames features)
    {
        ulong unknown = incompatible & ~QCOW2_INCOMPAT_KNOWN;
        if (unknown != 0)
        {
            var names = new List<string>();
            for (int bit = 0; bit < 64; bit++)
            {
                if ((unknown & (1UL << bit)) != 0)
                {
                    names.Add(features.Names.TryGetValue((0, bit), out var n) ? $"bit {bit} ({n})" : $"bit {bit}");
                }
            }
            throw new UnsupportedImageFeatureException(path, "unknown incompatible feature",
                $"qcow2 image '{path}' uses unknown incompatible features: {string.Join(", ", names)}.");
        }
        if ((incompatible & QCOW2_INCOMPAT_DIRTY) != 0)
        {
            throw new UnsupportedImageFeatureException(path, "dirty bit",
                $"qcow2 image '{path}' is marked dirty (it was not closed cleanly while using lazy refcounts); " +
                "repair it with 'qemu-img check -r all' first.");
        }
        if ((incompatible & QCOW2_INCOMPAT_CORRUPT) != 0 && !readOnly)
        {
            throw new ImageCorruptException(path,
                $"qcow2 image '{path}' is marked corrupt; it can only be opened read-only (repair it with 'qemu-img check -r all').", OffsetIncompatibleFeatures);
        }
        if ((incompatible & QCOW2_INCOMPAT_DATA_FILE) != 0)
        {
            throw new UnsupportedImageFeatureException(path, "external data file",
                $"qcow2 image '{path}' stores its data in an external data file, which is not supported.");
        }
        if ((incompatible & QCOW2_INCOMPAT_EXTL2) != 0)
        {
            throw new UnsupportedImageFeatureException(path, "extended L2 entries",
                $"qcow2 image '{path}' uses extended L2 entries (subclusters), which are not supported.");
        }
        if ((incompatible & QCOW2_INCOMPAT_COMPRESSION) != 0 && compressionType != 0)
        {
            throw new UnsupportedImageFeatureException(path, "compression type",
                $"qcow2 image '{path}' uses compression type {compressionType} (zstd); only zlib/deflate is supported.");
        }
    }
}
