using System.IO.Compression;
using static KvmPS.Storage.Qcow2.Qcow2Format;

namespace KvmPS.Storage.Qcow2;

// Guest reads: cluster lookup, backing-file fall-through, compressed clusters.
public sealed partial class Qcow2Image
{
    public void Read(ulong offset, Span<byte> buffer)
    {
        lock (_lock)
        {
            ThrowIfNoGuestIo();
            BlockRequestValidator.CheckRange(Path, SizeBytes, offset, (ulong)buffer.Length);
            long position = (long)offset;
            while (!buffer.IsEmpty)
            {
                long guestCluster = position >> _clusterBits;
                int intra = (int)(position & (_clusterSize - 1));
                int n = (int)Math.Min(buffer.Length, _clusterSize - intra);
                ReadFromCluster(guestCluster, GetL2Entry(guestCluster), intra, buffer[..n]);
                buffer = buffer[n..];
                position += n;
            }
        }
    }

    private void ReadFromCluster(long guestCluster, ulong entry, int intra, Span<byte> destination)
    {
        if ((entry & QCOW_OFLAG_COMPRESSED) != 0)
        {
            ReadCompressedCluster(entry).AsSpan(intra, destination.Length).CopyTo(destination);
            return;
        }
        if ((entry & QCOW_OFLAG_ZERO) != 0)
        {
            destination.Clear();
            return;
        }
        long host = (long)(entry & L2E_OFFSET_MASK);
        if (host == 0)
        {
            ReadFromBacking((guestCluster << _clusterBits) + intra, destination);
            return;
        }
        CheckDataClusterOffset(guestCluster, host);
        _file.Read(host + intra, destination);
    }

    private void ReadFromBacking(long guestOffset, Span<byte> destination)
    {
        if (_backing is null || (ulong)guestOffset >= _backing.SizeBytes)
        {
            destination.Clear();
            return;
        }
        int n = (int)Math.Min(destination.Length, (long)_backing.SizeBytes - guestOffset);
        _backing.Read((ulong)guestOffset, destination[..n]);
        destination[n..].Clear();
    }

    private void CheckDataClusterOffset(long guestCluster, long host)
    {
        if ((host & (_clusterSize - 1)) != 0 || host >= _file.LengthBytes)
        {
            throw new ImageCorruptException(Path,
                $"qcow2 image '{Path}': guest cluster {guestCluster} maps to host offset {host}, which is misaligned or beyond the end of the file ({_file.LengthBytes} bytes).",
                (ulong)host);
        }
    }

    private byte[] ReadCompressedCluster(ulong entry)
    {
        if (_compressedCache is not null && _compressedCacheEntry == entry)
        {
            return _compressedCache;
        }
        (long offset, long length) = CompressedRange(entry);
        if (offset >= _file.LengthBytes)
        {
            throw new ImageCorruptException(Path, $"qcow2 image '{Path}': compressed cluster at offset {offset} lies beyond the end of the file.", (ulong)offset);
        }
        int start = (int)(offset & (CompressedSectorSizeBytes - 1));
        var compressed = new byte[length - start];
        _file.Read(offset, compressed);
        var output = _compressedCache ?? new byte[_clusterSize];
        _compressedCache = null;
        int produced;
        try
        {
            using var input = new MemoryStream(compressed, writable: false);
            // qcow2 stores raw deflate data (zlib window bits -12, no header).
            using var inflater = new DeflateStream(input, CompressionMode.Decompress);
            produced = inflater.ReadAtLeast(output, output.Length, throwOnEndOfStream: false);
        }
        catch (InvalidDataException e)
        {
            throw new ImageCorruptException(Path, $"qcow2 image '{Path}': compressed cluster at offset {offset} does not decompress: {e.Message}", (ulong)offset);
        }
        if (produced != output.Length)
        {
            throw new ImageCorruptException(Path, $"qcow2 image '{Path}': compressed cluster at offset {offset} decompresses to {produced} bytes instead of {output.Length}.", (ulong)offset);
        }
        _compressedCache = output;
        _compressedCacheEntry = entry;
        return output;
    }

    /// <summary>Host range of a compressed cluster: start offset and sector-rounded length from the sector start.</summary>
    private (long Offset, long LengthFromSectorStart) CompressedRange(ulong entry)
    {
        long offset = (long)(entry & _compressedOffsetMask);
        long sectors = (long)((entry >> _csizeShift) & _csizeMask) + 1;
        long length = sectors * CompressedSectorSizeBytes;
        return (offset, length);
    }
}
