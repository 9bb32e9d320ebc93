using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>
/// Calls for opening files without following symlinks (openat relative to a directory fd, O_NOFOLLOW), reading owner
/// and mode (fstat/fstatat), resolving links (realpath) and the size of a block device (BLKGETSIZE64).
/// </summary>
internal static unsafe partial class Libc
{
    public const int O_WRONLY = 1, O_EXCL = 0x80, O_APPEND = 0x400, O_DIRECTORY = 0x10000, O_NOFOLLOW = 0x20000;
    public const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100;
    public const int ENOTDIR = 20, ELOOP = 40;
    public const uint S_IFLNK = 0xA000, S_IFBLK = 0x6000;

    /// <summary>_IOR(0x12, 114, size_t) from linux/fs.h: a block device's size in bytes.</summary>
    public const uint BLKGETSIZE64 = 0x80081272;

    [LibraryImport(Lib, EntryPoint = "openat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int OpenAt(int dirFd, string path, int flags, int mode);

    [LibraryImport(Lib, EntryPoint = "fstat", SetLastError = true)]
    public static partial int Fstat(int fd, out FileStatus status);

    [LibraryImport(Lib, EntryPoint = "fstatat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int FstatAt(int dirFd, string path, out FileStatus status, int flags);

    [LibraryImport(Lib, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, nuint request, out ulong value);
}

/// <summary>glibc's <c>struct stat</c> on x86-64 (144 bytes; checked by LibcLayoutTests).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct FileStatus
{
    public ulong st_dev;
    public ulong st_ino;
    public ulong st_nlink;
    public uint st_mode;
    public uint st_uid;
    public uint st_gid;
    private int __pad0;
    public ulong st_rdev;
    public long st_size;
    public long st_blksize;
    public long st_blocks;
    public fixed long st_times[6];
    private fixed long __glibc_reserved[3];
}

internal static unsafe partial class Libc
{
    [LibraryImport(Lib, EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial nint RealPathNative(string path, nint resolved);

    [LibraryImport(Lib, EntryPoint = "free")]
    private static partial void Free(nint pointer);

    /// <summary>realpath(3): the absolute path with every symlink, "." and ".." resolved; null (errno set) if a component is missing.</summary>
    public static string? RealPath(string path)
    {
        nint resolved = RealPathNative(path, 0);
        if (resolved == 0) return null;
        try { return Marshal.PtrToStringUTF8(resolved); }
        finally { Free(resolved); }
    }
}
