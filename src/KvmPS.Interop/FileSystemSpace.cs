using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>Size, free and available space of the file system holding a path (<c>statvfs</c>), in bytes.</summary>
/// <param name="CapacityBytes">f_blocks × f_frsize.</param>
/// <param name="FreeBytes">f_bfree × f_frsize (including blocks reserved for root).</param>
/// <param name="AvailableBytes">f_bavail × f_frsize: what an unprivileged user can still write.</param>
public readonly record struct FileSystemSpace(ulong CapacityBytes, ulong FreeBytes, ulong AvailableBytes)
{
    /// <summary>Bytes in use on the file system (capacity − free).</summary>
    public ulong UsedBytes => CapacityBytes - FreeBytes;

    /// <summary>The <c>statvfs</c> of <paramref name="path"/>; throws <see cref="NativeCallException"/> (e.g. ENOENT).</summary>
    public static FileSystemSpace Of(string path)
    {
        if (Libc.StatVfs(path, out var status) != 0)
            throw NativeCallException.FromLastError("statvfs", path);
        return new FileSystemSpace(status.f_blocks * status.f_frsize, status.f_bfree * status.f_frsize, status.f_bavail * status.f_frsize);
    }

    /// <summary>
    /// Bytes a file really occupies (<c>st_blocks</c> × 512, read with <c>lstat</c>): less than its length when it is
    /// sparse. Null if it does not exist.
    /// </summary>
    public static long? AllocatedBytes(string path)
    {
        if (Libc.FstatAt(Libc.AT_FDCWD, path, out var status, Libc.AT_SYMLINK_NOFOLLOW) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is Libc.ENOENT or Libc.ENOTDIR) return null;
            throw new NativeCallException("lstat", errno, path);
        }
        return status.st_blocks * 512;
    }
}

internal static unsafe partial class Libc
{
    [LibraryImport(Lib, EntryPoint = "statvfs", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int StatVfs(string path, out StatVfsStatus status);
}

/// <summary>glibc's <c>struct statvfs</c> on x86-64 (112 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct StatVfsStatus
{
    public ulong f_bsize;
    public ulong f_frsize;
    public ulong f_blocks;
    public ulong f_bfree;
    public ulong f_bavail;
    public ulong f_files;
    public ulong f_ffree;
    public ulong f_favail;
    public ulong f_fsid;
    public ulong f_flag;
    public ulong f_namemax;
    private fixed int __f_spare[6];
}
