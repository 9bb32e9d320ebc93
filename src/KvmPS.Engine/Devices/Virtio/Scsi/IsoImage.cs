using KvmPS.Interop;
using Microsoft.Win32.SafeHandles;
using KvmPS.Vmm;

namespace KvmPS.Devices.Virtio.Scsi;

/// <summary>An ISO image the drive cannot use; the message names the file and says why.</summary>
public sealed class IsoImageException(string path, string message, Exception? inner = null) : Exception(message, inner)
{
    public string ImagePath { get; } = path;
}

/// <summary>
/// A read-only ISO 9660 image behind the CD-ROM LUN: opened O_RDONLY (nothing the guest does can write it), checked
/// for the primary volume descriptor's "CD001" at byte 0x8001 (sector 16, after the 32 KiB system area), and read in
/// 2048-byte blocks. A partial last block is not exposed.
/// </summary>
public sealed class IsoImage : IDisposable
{
    public const int BlockSize = 2048;
    /// <summary>Where ISO 9660 puts the standard identifier of the first volume descriptor (sector 16, byte 1).</summary>
    public const long SignatureOffset = 0x8001;
    private static ReadOnlySpan<byte> Signature => "CD001"u8;

    private readonly SafeFileHandle _handle;

    private IsoImage(string path, SafeFileHandle handle, long sizeBytes)
    {
        Path = path;
        _handle = handle;
        SizeBytes = sizeBytes;
    }

    public string Path { get; }
    public long SizeBytes { get; }
    /// <summary>Whole 2048-byte blocks.</summary>
    public uint Blocks => (uint)Math.Min(SizeBytes / BlockSize, uint.MaxValue);

    /// <summary>
    /// Opens and checks <paramref name="path"/>: missing, a directory, unreadable, too short or without the ISO 9660
    /// signature is an <see cref="IsoImageException"/> naming the file.
    /// </summary>
    public static IsoImage Open(string path)
    {
        if (string.IsNullOrEmpty(path)) throw new IsoImageException(path ?? "", "the ISO image path is empty.");
        if (Directory.Exists(path)) throw new IsoImageException(path, $"'{path}' is a directory, not an ISO image.");
        SafeFileHandle handle;
        try
        {
            // FileAccess.Read: O_RDONLY. FileShare.ReadWrite: no flock, so several VMs may share one ISO.
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new IsoImageException(path, $"the ISO image '{path}' does not exist.", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IsoImageException(path, $"cannot read the ISO image '{path}': {IoErrorText.Describe(e, path)}", e);
        }
        return OnHandle(path, handle);
    }

    /// <summary>
    /// As <see cref="Open"/>, on a file management opened and passed with media.change (docs/vmm.md, "Passing open
    /// files") or this VMM kept across a guest reboot: <paramref name="path"/> is only reported, never opened, as a
    /// jailed VMM may not see it. The file must be a regular file open read-only; anything else (a pipe, a directory, a
    /// socket, a file open for writing) is an <see cref="IsoImageException"/> naming it. The handle is the image's, or
    /// closed on failure.
    /// </summary>
    public static IsoImage OpenPassed(string path, SafeFileHandle handle)
    {
        try
        {
            int fd = (int)handle.DangerousGetHandle();
            if (Libc.Fstat(fd, out var status) != 0)
                throw new IsoImageException(path, $"the file passed for the ISO image '{path}' cannot be examined (fstat: {NativeCallException.FromLastError("fstat").Message}).");
            uint type = status.st_mode & Libc.S_IFMT;
            if (type != Libc.S_IFREG)
                throw new IsoImageException(path, $"the file passed for the ISO image '{path}' is {FileTypeName(type)}, not a regular file.");
            int flags = Libc.FcntlInt(fd, FcntlGetFlags, 0);
            if (flags < 0 || (flags & OpenAccessModes) != Libc.O_RDONLY)
                throw new IsoImageException(path, $"the file passed for the ISO image '{path}' is {(flags < 0 ? "not examinable (fcntl F_GETFL failed)" : "open for writing")}; a medium is passed read-only.");
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        return OnHandle(path, handle);
    }

    private const int FcntlGetFlags = 3, OpenAccessModes = 3; // F_GETFL, O_ACCMODE

    private static string FileTypeName(uint type) => type switch
    {
        Libc.S_IFDIR => "a directory",
        Libc.S_IFSOCK => "a socket",
        0x1000 => "a pipe",
        0x2000 => "a character device",
        0x6000 => "a block device",
        _ => $"a file of type 0x{type:X}",
    };

    /// <summary>A duplicate of the open image (closed by the caller), kept across a guest reboot.</summary>
    public SafeFileHandle Duplicate() => PassedDescriptors.Duplicate(_handle);

    /// <summary>Checks the ISO 9660 signature on an open image; the handle is the image's, or closed on failure.</summary>
    private static IsoImage OnHandle(string path, SafeFileHandle handle)
    {
        try
        {
            long size = RandomAccess.GetLength(handle);
            Span<byte> id = stackalloc byte[5];
            int n = size >= SignatureOffset + id.Length ? RandomAccess.Read(handle, id, SignatureOffset) : 0;
            if (n != id.Length || !id.SequenceEqual(Signature))
                throw new IsoImageException(path, $"'{path}' is not an ISO 9660 image (no \"CD001\" volume descriptor at byte 0x8001).");
            return new IsoImage(path, handle, size);
        }
        catch (IOException e)
        {
            handle.Dispose();
            throw new IsoImageException(path, $"cannot read the ISO image '{path}': {e.Message}", e);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads exactly <c>buffer.Length</c> bytes at <paramref name="offset"/> (the caller checked the range).</summary>
    public void Read(long offset, Span<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = RandomAccess.Read(_handle, buffer[done..], offset + done);
            if (n == 0) { buffer[done..].Clear(); return; } // the file shrank under us: zeroes, not stale data
            done += n;
        }
    }

    public void Dispose() => _handle.Dispose();
}
