using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>File calls .NET does not expose: hole punching, OFD locks, fsync of directories, fdatasync.</summary>
internal static partial class Libc
{
    // fallocate(2) modes, from linux/falloc.h.
    public const int FALLOC_FL_KEEP_SIZE = 0x01;
    public const int FALLOC_FL_PUNCH_HOLE = 0x02;
    public const int FALLOC_FL_ZERO_RANGE = 0x10;

    // fcntl(2) open-file-description lock commands (same on x86-64 and arm64).
    public const int F_OFD_GETLK = 36;
    public const int F_OFD_SETLK = 37;

    public const short F_RDLCK = 0;
    public const short F_WRLCK = 1;
    public const short F_UNLCK = 2;

    public const short SEEK_SET = 0;

    [LibraryImport(Lib, EntryPoint = "fallocate", SetLastError = true)]
    public static partial int fallocate(int fd, int mode, long offset, long len);

    [LibraryImport(Lib, EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int fdatasync(int fd);

    /// <summary>fsync(2): also on a directory, so a rename in it is durable.</summary>
    [LibraryImport(Lib, EntryPoint = "fsync", SetLastError = true)]
    public static partial int Fsync(int fd);

    // fcntl is variadic; a pointer third argument is passed exactly like a fixed one on the Linux
    // x86-64 and AAPCS64 ABIs, so a fixed-signature import is safe here.
    [LibraryImport(Lib, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int fcntl(int fd, int cmd, ref Flock lockDescription);
}

/// <summary>struct flock from the Linux 64-bit ABI (32 bytes, natural alignment; checked by LibcLayoutTests).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct Flock
{
    public short l_type;
    public short l_whence;
    public long l_start;
    public long l_len;
    public int l_pid;
}
