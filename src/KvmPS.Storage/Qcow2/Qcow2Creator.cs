using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

/// <summary>Lays out a new, empty qcow2 v3 image: header, refcount table, refcount blocks, L1 table.</summary>
internal static class Qcow2Creator
{
    public static void Create(string path, ulong sizeBytes, long clusterSizeBytes, int refcountBits,
        string? backingFile, string? backingFormat)
    {
        if (clusterSizeBytes < (1L << MIN_CLUSTER_BITS) || clusterSizeBytes > (1L << MAX_CLUSTER_BITS) || !BitOperations.IsPow2(clusterSizeBytes))
        {
            throw new ArgumentOutOfRangeException(nameof(clusterSizeBytes),
                $"Cluster size {clusterSizeBytes} for '{path}' must be a power of two between {1 << MIN_CLUSTER_BITS} and {1 << MAX_CLUSTER_BITS} bytes.");
        }
        if (refcountBits < 1 || refcountBits > 64 || !BitOperations.IsPow2(refcountBits))
        {
            throw new ArgumentOutOfRangeException(nameof(refcountBits), $"Refcount width {refcountBits} for '{path}' must be 1, 2, 4, 8, 16, 32 or 64 bits.");
        }
        if (sizeBytes % 512 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), $"Size {sizeBytes} for '{path}' must be a multiple of 512 bytes.");
        }
        int clusterBits = BitOperations.Log2((ulong)clusterSizeBytes);
        int refcountOrder = BitOperations.Log2((uint)refcountBits);
        long c = clusterSizeBytes;

        long l2Entries = c / 8;
        long guestClusters = (long)((sizeBytes + (ulong)c - 1) >> clusterBits);
        long l1Size = Math.Max(1, (guestClusters + l2Entries - 1) / l2Entries);
        if (l1Size * 8 > QCOW_MAX_L1_SIZE_BYTES)
        {
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), $"Size {sizeBytes} for '{path}' needs an L1 table over {QCOW_MAX_L1_SIZE_BYTES >> 20} MiB; use a larger cluster size.");
        }
        long l1Clusters = (l1Size * 8 + c - 1) / c;
        long entriesPerBlock = c * 8 / refcountBits;

        // Fixed point: metadata clusters must be covered by the refcount blocks describing them.
        long blocks = 1, tableClusters = 1;
        while (true)
        {
            long total = 1 + tableClusters + blocks + l1Clusters;
            long needBlocks = (total + entriesPerBlock - 1) / entriesPerBlock;
            long needTable = (needBlocks * 8 + c - 1) / c;
            if (needBlocks == blocks && needTable == tableClusters)
            {
                break;
            }
            blocks = needBlocks;
            tableClusters = needTable;
        }
        long tableOffset = c;
        long blocksOffset = tableOffset + tableClusters * c;
        long l1Offset = blocksOffset + blocks * c;
        long totalClusters = 1 + tableClusters + blocks + l1Clusters;

        var header = new byte[c];
        var h = header.AsSpan();
        BinaryPrimitives.WriteUInt32BigEndian(h[OffsetMagic..], QCOW_MAGIC);
        BinaryPrimitives.WriteUInt32BigEndian(h[OffsetVersion..], 3);
        BinaryPrimitives.WriteUInt32BigEndian(h[OffsetClusterBits..], (uint)clusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(h[OffsetSize..], sizeBytes);
        BinaryPrimitives.WriteUInt32BigEndian(h[OffsetL1Size..], (uint)l1Size);
        BinaryPrimitives.WriteUInt64BigEndian(h[OffsetL1TableOffset..], (ulong)l1Offset);
        BinaryPrimitives.WriteUInt64BigEndian(h[OffsetRefcountTableOffset..], (ulong)tableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(h[OffsetRefcountTableClusters..], (uint)tableClusters);
        BinaryPrimitives.WriteUInt32BigEndian(h[OffsetRefcountOrder..], (uint)refcountOrder);
        BinaryPrimitives.WriteUInt32BigEndian(h[OffsetHeaderLength..], V3_CREATED_HEADER_LENGTH);
        int position = V3_CREATED_HEADER_LENGTH;
        if (backingFormat is not null)
        {
            byte[] format = Encoding.UTF8.GetBytes(backingFormat);
            BinaryPrimitives.WriteUInt32BigEndian(h[position..], QCOW2_EXT_MAGIC_BACKING_FORMAT);
            BinaryPrimitives.WriteUInt32BigEndian(h[(position + 4)..], (uint)format.Length);
            format.CopyTo(h[(position + 8)..]);
            position += 8 + ((format.Length + 7) & ~7);
        }
        position += 8; // end-of-extensions marker (zeroes)
        if (backingFile is not null)
        {
            byte[] name = Encoding.UTF8.GetBytes(backingFile);
            if (name.Length > MAX_BACKING_FILE_NAME_BYTES || position + name.Length > c)
            {
                throw new ArgumentException($"Backing file name '{backingFile}' is too long for '{path}' (max {MAX_BACKING_FILE_NAME_BYTES} bytes and must fit the first cluster).", nameof(backingFile));
            }
            BinaryPrimitives.WriteUInt64BigEndian(h[OffsetBackingFileOffset..], (ulong)position);
            BinaryPrimitives.WriteUInt32BigEndian(h[OffsetBackingFileSize..], (uint)name.Length);
            name.CopyTo(h[position..]);
        }

        var table = new byte[tableClusters * c];
        for (long b = 0; b < blocks; b++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan((int)(b * 8)), (ulong)(blocksOffset + b * c));
        }
        var blockData = new byte[blocks * c];
        for (long cluster = 0; cluster < totalClusters; cluster++)
        {
            SetRefcountOne(blockData, cluster, refcountBits);
        }

        try
        {
            using var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
            RandomAccess.SetLength(handle, totalClusters * c); // the L1 table starts out all zero
            RandomAccess.Write(handle, header, 0);
            RandomAccess.Write(handle, table, tableOffset);
            RandomAccess.Write(handle, blockData, blocksOffset);
        }
        catch (IOException e)
        {
            throw new DiskImageException(path, $"Cannot create qcow2 image '{path}': {e.Message}", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new DiskImageException(path, $"Cannot create qcow2 image '{path}': access denied.", e);
        }
    }

    private static void SetRefcountOne(byte[] blocks, long cluster, int refcountBits)
    {
        // Blocks are contiguous, so the entry index across them equals the cluster index.
        long bit = cluster * refcountBits;
        if (refcountBits >= 8)
        {
            blocks[(bit + refcountBits) / 8 - 1] = 1; // big-endian: value 1 lives in the last byte
        }
        else
        {
            blocks[bit / 8] |= (byte)(1 << (int)(bit % 8));
        }
    }
}
