using KvmPS.Storage.Locking;

namespace KvmPS.Storage.Raw;

/// <summary>
/// A raw disk image: guest byte N is file byte N. Thread-safe (positional I/O only).
/// </summary>
public sealed class RawImage : IBlockBackend
{
    /// <summary>Raw images must hold whole 512-byte sectors (what virtio-blk addresses).</summary>
    public const int SectorSizeBytes = 512;

    private readonly ImageFile _file;
    private int _disposed;

    private RawImage(ImageFile file, ulong sizeBytes)
    {
        _file = file;
        SizeBytes = sizeBytes;
    }

    public string Path => _file.Path;

    internal ImageFile File => _file;

    public ulong SizeBytes { get; }

    public bool ReadOnly => !_file.Writable;

    /// <summary>Opens a raw image, taking QEMU-compatible locks.</summary>
    /// <param name="requireWholeSectors">Reject sizes that are not a multiple of 512 (guest-facing images).</param>
    public static RawImage Open(string path, bool readOnly, bool requireWholeSectors = true, bool takeLock = true)
    {
        return OpenOn(ImageFile.Open(path, writable: !readOnly), readOnly, requireWholeSectors, takeLock);
    }

    /// <summary>As <see cref="Open"/>, on a file already open (a handed-over one); disposes it on failure.</summary>
    internal static RawImage OpenOn(ImageFile file, bool readOnly, bool requireWholeSectors, bool takeLock = true)
    {
        string path = file.Path;
        try
        {
            long length = file.LengthBytes;
            if (requireWholeSectors && length % SectorSizeBytes != 0)
            {
                throw new DiskImageException(path,
                    $"Raw disk image '{path}' is {length} bytes, which is not a multiple of {SectorSizeBytes}; " +
                    "resize it (e.g. 'qemu-img resize') to whole sectors.");
            }
            if (takeLock)
            {
                QemuImageLock.Acquire(file,
                    readOnly ? QemuImageLock.ReaderPermissions : QemuImageLock.WriterPermissions,
                    QemuImageLock.DefaultSharedPermissions);
            }
            return new RawImage(file, (ulong)length);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public void Read(ulong offset, Span<byte> buffer)
    {
        BlockRequestValidator.CheckRange(Path, SizeBytes, offset, (ulong)buffer.Length);
        _file.Read((long)offset, buffer);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        BlockRequestValidator.CheckWritable(Path, ReadOnly);
        BlockRequestValidator.CheckRange(Path, SizeBytes, offset, (ulong)data.Length);
        _file.Write((long)offset, data);
    }

    public void Flush()
    {
        if (!ReadOnly)
        {
            _file.DataSync();
        }
    }

    public void Discard(ulong offset, ulong lengthBytes)
    {
        BlockRequestValidator.CheckWritable(Path, ReadOnly);
        BlockRequestValidator.CheckRange(Path, SizeBytes, offset, lengthBytes);
        // Discard is advisory; a file system without hole punching simply keeps the data.
        _file.TryPunchHole((long)offset, (long)lengthBytes);
    }

    public void WriteZeroes(ulong offset, ulong lengthBytes, bool mayUnmap)
    {
        BlockRequestValidator.CheckWritable(Path, ReadOnly);
        BlockRequestValidator.CheckRange(Path, SizeBytes, offset, lengthBytes);
        if (lengthBytes == 0)
        {
            return;
        }
        if (mayUnmap ? _file.TryPunchHole((long)offset, (long)lengthBytes)
                     : _file.TryZeroRange((long)offset, (long)lengthBytes))
        {
            return;
        }
        ZeroFill.Write(_file, (long)offset, (long)lengthBytes);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _file.Dispose();
        }
    }
}
