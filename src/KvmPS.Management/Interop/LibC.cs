using System.Runtime.InteropServices;

namespace KvmPS.Management.Interop;

/// <summary>
/// The few libc calls the store needs that .NET does not expose: <c>flock(2)</c> for a cross-process lock
/// (FileStream's own locking takes LOCK_SH on every open, which would fight ours), <c>fsync(2)</c> on
/// directories for durable renames, and <c>geteuid(2)</c> for the default store location. Linux only.
/// </summary>
internal static partial class LibC
{
    public const int O_RDONLY = 0;
    public const int O_RDWR = 2;
    public const int O_CREAT = 0x40;     // 0100 octal on x86-64 and arm64 alike
    public const int O_CLOEXEC = 0x80000; // 02000000 octal

    public const int LOCK_EX = 2;
    public const int LOCK_NB = 4;
    public const int LOCK_UN = 8;

    public const int EINTR = 4;
    public const int EWOULDBLOCK = 11;

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Open(string path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    public static partial int Flock(int fd, int operation);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    public static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint GetEffectiveUserId();

    public static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";
}
