namespace KvmPS.Storage.Qcow2;

/// <summary>Constants from the qcow2 specification (docs/interop/qcow2.txt); spec names kept.</summary>
internal static class Qcow2Format
{
    public const uint QCOW_MAGIC = 0x514649fb; // "QFI\xfb"

    public const int MIN_CLUSTER_BITS = 9;
    public const int MAX_CLUSTER_BITS = 21; // QEMU's 2 MiB implementation limit
    public const int DEFAULT_CLUSTER_BITS = 16;
    public const int MAX_REFCOUNT_ORDER = 6;
    public const int DEFAULT_REFCOUNT_ORDER = 4;

    public const int V2_HEADER_LENGTH = 72;
    public const int V3_MIN_HEADER_LENGTH = 104;
    public const int V3_CREATED_HEADER_LENGTH = 112; // includes compression_type + padding, like qemu-img
    public const int MAX_BACKING_FILE_NAME_BYTES = 1023;
    public const long QCOW_MAX_L1_SIZE_BYTES = 32L << 20;
    public const long QCOW_MAX_REFTABLE_SIZE_BYTES = 8L << 20;
    public const int QCOW_MAX_SNAPSHOTS = 65536;
    public const int QCOW_MAX_SNAPSHOT_EXTRA_DATA = 1024;
    public const long QCOW_MAX_SNAPSHOTS_SIZE = 1024L * QCOW_MAX_SNAPSHOTS; // QEMU: 1 KiB per entry on average

    // Header field offsets.
    public const int OffsetMagic = 0;
    public const int OffsetVersion = 4;
    public const int OffsetBackingFileOffset = 8;
    public const int OffsetBackingFileSize = 16;
    public const int OffsetClusterBits = 20;
    public const int OffsetSize = 24;
    public const int OffsetCryptMethod = 32;
    public const int OffsetL1Size = 36;
    public const int OffsetL1TableOffset = 40;
    public const int OffsetRefcountTableOffset = 48;
    public const int OffsetRefcountTableClusters = 56;
    public const int OffsetNbSnapshots = 60;
    public const int OffsetSnapshotsOffset = 64;
    public const int OffsetIncompatibleFeatures = 72;
    public const int OffsetCompatibleFeatures = 80;
    public const int OffsetAutoclearFeatures = 88;
    public const int OffsetRefcountOrder = 96;
    public const int OffsetHeaderLength = 100;
    public const int OffsetCompressionType = 104;

    // Incompatible feature bits.
    public const ulong QCOW2_INCOMPAT_DIRTY = 1UL << 0;
    public const ulong QCOW2_INCOMPAT_CORRUPT = 1UL << 1;
    public const ulong QCOW2_INCOMPAT_DATA_FILE = 1UL << 2;
    public const ulong QCOW2_INCOMPAT_COMPRESSION = 1UL << 3;
    public const ulong QCOW2_INCOMPAT_EXTL2 = 1UL << 4;
    public const ulong QCOW2_INCOMPAT_KNOWN = 0x1f;

    // Header extension types.
    public const uint QCOW2_EXT_MAGIC_END = 0;
    public const uint QCOW2_EXT_MAGIC_BACKING_FORMAT = 0xe2792aca;
    public const uint QCOW2_EXT_MAGIC_FEATURE_TABLE = 0x6803f857;
    public const uint QCOW2_EXT_MAGIC_BITMAPS = 0x23852875;
    public const uint QCOW2_EXT_MAGIC_CRYPTO_HEADER = 0x0537be77;
    public const uint QCOW2_EXT_MAGIC_DATA_FILE = 0x44415441;

    // Table entry flags and masks.
    public const ulong QCOW_OFLAG_COPIED = 1UL << 63;
    public const ulong QCOW_OFLAG_COMPRESSED = 1UL << 62;
    public const ulong QCOW_OFLAG_ZERO = 1UL << 0;
    public const ulong L1E_OFFSET_MASK = 0x00fffffffffffe00UL;
    public const ulong L2E_OFFSET_MASK = 0x00fffffffffffe00UL;
    public const ulong REFT_OFFSET_MASK = 0xfffffffffffffe00UL;
    public const ulong L1E_RESERVED_MASK = 0x7f000000000001ffUL;

    public const int CompressedSectorSizeBytes = 512;
}
