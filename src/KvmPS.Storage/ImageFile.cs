using System.Runtime.InteropServices;
using KvmPS.Interop;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Storage;

/// <summary>An open image file with positional I/O; errors are wrapped to name the file.</summary>
internal sealed class ImageFile : IDisposable
{
    private readonly SafeFileHandle _handle;
    private long _lengthBytes;

    private ImageFile(string path, SafeFileHandle handle, bool writable)
    {
        Path = path;
        _handle = handle;
        Writable = writable;
        // A host block device (a disk, an LV, a loop device) has st_size 0: its size comes from BLKGETSIZE64.
        IsBlockDevice = BlockDevice.IsBlockDevice(handle);
        _lengthBytes = IsBlockDevice ? checked((long)BlockDevice.SizeBytes(handle, path)) : RandomAccess.GetLength(handle);
    }

    /// <summary>True for a host block device: its size is fixed (it cannot grow like a file).</summary>
    public bool IsBlockDevice { get; }

    public string Path { get; }

    public bool Writable { get; }

    /// <summary>Current file length; tracked locally so hot paths avoid fstat.</summary>
    public long LengthBytes => Interlocked.Read(ref _lengthBytes);

    public int FileDescriptor => (int)_handle.DangerousGetHandle();

    /// <summary>The open file itself: a live upgrade hands it to the next VMM (SCM_RIGHTS), locks and all.</summary>
    internal SafeFileHandle Handle => _handle;

    /// <summary>An image on a file opened elsewhere (handed over by another process); the caller checked it is <paramref name="path"/>.</summary>
    internal static ImageFile FromHandle(string path, SafeFileHandle handle, bool writable) => new(path, handle, writable);

    public static ImageFile Open(string path, bool writable)
    {
        try
        {
            // FileShare.ReadWrite: .NET would otherwise take a whole-file flock(LOCK_EX); sharing
            // policy is enforced with QEMU-compatible OFD byte locks instead (see QemuImageLock).
            var handle = File.OpenHandle(path, FileMode.Open,
                writable ? FileAccess.ReadWrite : FileAccess.Read,
                FileShare.ReadWrite | FileShare.Delete);
            return new ImageFile(path, handle, writable);
        }
        catch (FileNotFoundException e)
        {
            throw new DiskImageException(path, $"Disk image '{path}' does not exist.", e);
        }
        catch (DirectoryNotFoundException e)
        {
            throw new DiskImageException(path, $"Disk image '{path}' does not exist (directory not found).", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new DiskImageException(path,
                $"Access to disk image '{path}' was denied ({(writable ? "read-write" : "read-only")} open).", e);
        }
        catch (IOException e)
        {
            throw new DiskImageException(path, $"Cannot open disk image '{path}': {e.Message}", e);
        }
    }

    /// <summary>Reads exactly <c>buffer.Length</c> bytes; bytes past end of file read as zero.</summary>
    public void Read(long offset, Span<byte> buffer)
    {
        int done = 0;
        try
        {
            while (done < buffer.Length)
            {
                int n = RandomAccess.Read(_handle, buffer[done..], offset + done);
                if (n == 0)
                {
                    buffer[done..].Clear();
                    return;
                }
                done += n;
            }
        }
        catch (IOException e)
        {
            throw new DiskImageException(Path, $"Read of {buffer.Length} bytes at offset {offset} of '{Path}' failed: {e.Message}", e);
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        try
        {
            RandomAccess.Write(_handle, data, offset);
        }
        catch (IOException e)
        {
            throw new DiskImageException(Path, $"Write of {data.Length} bytes at offset {offset} of '{Path}' failed: {e.Message}", e);
        }
        long end = offset + data.Length;
        long current;
        while (end > (current = Interlocked.Read(ref _lengthBytes)))
        {
            if (Interlocked.CompareExchange(ref _lengthBytes, end, current) == current)
            {
                break;
            }
        }
    }

    public void SetLength(long lengthBytes)
    {
        try
        {
            RandomAccess.SetLength(_handle, lengthBytes);
        }
        catch (IOException e)
        {
            throw new DiskImageException(Path, $"Resizing '{Path}' to {lengthBytes} bytes failed: {e.Message}", e);
        }
        Interlocked.Exchange(ref _lengthBytes, lengthBytes);
    }

    /// <summary>fdatasync: data and the metadata needed to read it back are durable.</summary>
    public void DataSync()
    {
        if (Libc.fdatasync(FileDescriptor) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new DiskImageException(Path, $"fdatasync of '{Path}' failed (errno {errno}).");
        }
    }

    /// <summary>
    /// Deallocates the range while keeping the file size; the range then reads as zero.
    /// Returns false when the file system cannot punch holes.
    /// </summary>
    public bool TryPunchHole(long offset, long lengthBytes)
    {
        return Fallocate(Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, offset, lengthBytes);
    }

    /// <summary>Makes the range read as zero, keeping it allocated. False when unsupported.</summary>
    public bool TryZeroRange(long offset, long lengthBytes)
    {
        return Fallocate(Libc.FALLOC_FL_ZERO_RANGE | Libc.FALLOC_FL_KEEP_SIZE, offset, lengthBytes);
    }

    private bool Fallocate(int mode, long offset, long lengthBytes)
    {
        if (lengthBytes <= 0)
        {
            return true;
        }
        while (true)
        {
            if (Libc.fallocate(FileDescriptor, mode, offset, lengthBytes) == 0)
            {
                return true;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.EINTR)
            {
                continue;
            }
            if (errno == Libc.EOPNOTSUPP)
            {
                return false;
            }
            throw new DiskImageException(Path, $"fallocate(mode 0x{mode:x}) of {lengthBytes} bytes at offset {offset} of '{Path}' failed (errno {errno}).");
        }
    }

    public void Dispose() => _handle.Dispose();
}
