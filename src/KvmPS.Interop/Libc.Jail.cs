using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>
/// The calls of the VMM's jail (docs/confinement.md, "The jail"): a mount namespace of its own (unshare, mount,
/// pivot_root), then another user (setgroups/setresgid/setresuid) and no capabilities (capset).
/// </summary>
internal static unsafe partial class Libc
{
    public const int CLONE_FS = 0x00000200, CLONE_NEWNS = 0x00020000, CLONE_NEWNET = 0x40000000;
    public const ulong MS_RDONLY = 1, MS_NOSUID = 2, MS_NODEV = 4, MS_NOEXEC = 8, MS_REMOUNT = 32, MS_BIND = 4096,
        MS_REC = 16384, MS_PRIVATE = 1 << 18;
    public const int MNT_DETACH = 2;
    public const int O_PATH = 0x200000;
    public const long SYS_pivot_root = 155, SYS_capset = 126, SYS_capget = 125;

    /// <summary>_LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.</summary>
    public const uint LINUX_CAPABILITY_VERSION_3 = 0x20080522;

    [LibraryImport(Lib, EntryPoint = "unshare", SetLastError = true)]
    public static partial int Unshare(int flags);

    /// <summary>The inode number of what <paramref name="path"/> resolves to (a namespace's, for /proc/PID/ns/*); null if it cannot be read.</summary>
    public static ulong? InodeOf(string path) => FstatAt(AT_FDCWD, path, out var status, 0) == 0 ? status.st_ino : null;

    /// <summary>setns(2): moves the calling thread (only) into the namespace <paramref name="fd"/> refers to.</summary>
    [LibraryImport(Lib, EntryPoint = "setns", SetLastError = true)]
    public static partial int Setns(int fd, int nsType);

    [LibraryImport(Lib, EntryPoint = "mount", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Mount(string? source, string target, string? fsType, ulong flags, string? data);

    [LibraryImport(Lib, EntryPoint = "umount2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Umount2(string target, int flags);

    [LibraryImport(Lib, EntryPoint = "chdir", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Chdir(string path);

    [LibraryImport(Lib, EntryPoint = "mkdir", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Mkdir(string path, uint mode);

    [LibraryImport(Lib, EntryPoint = "syscall", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial long SyscallPaths(long number, string a1, string a2);

    /// <summary>pivot_root(2) (no glibc wrapper).</summary>
    public static int PivotRoot(string newRoot, string putOld) => (int)SyscallPaths(SYS_pivot_root, newRoot, putOld);

    // glibc's own wrappers, not raw syscalls: credentials are per thread in Linux, and glibc applies a change to every
    // thread of the process (its set-xid broadcast), which is what makes the whole VMM another user.
    [LibraryImport(Lib, EntryPoint = "setgroups", SetLastError = true)]
    public static partial int SetGroups(nuint size, uint* groups);

    [LibraryImport(Lib, EntryPoint = "setresgid", SetLastError = true)]
    public static partial int SetResGid(uint real, uint effective, uint saved);

    [LibraryImport(Lib, EntryPoint = "setresuid", SetLastError = true)]
    public static partial int SetResUid(uint real, uint effective, uint saved);

    /// <summary>capset(2) with all three sets empty, on the calling thread (version 3 header, pid 0).</summary>
    public static int ClearCapabilities()
    {
        uint* header = stackalloc uint[2] { LINUX_CAPABILITY_VERSION_3, 0 };
        uint* data = stackalloc uint[6]; // { effective, permitted, inheritable } × 2 words, all zero
        for (int i = 0; i < 6; i++) data[i] = 0;
        return (int)Syscall3(SYS_capset, (nuint)header, (nuint)data, 0);
    }
}

internal static partial class Libc
{
    /// <summary>lchown(2): a link itself, never what it points to.</summary>
    [LibraryImport(Lib, EntryPoint = "lchown", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Lchown(string path, uint uid, uint gid);
}
