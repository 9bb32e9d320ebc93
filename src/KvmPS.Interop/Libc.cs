using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>
/// libc imports for every KvmPS assembly (engine, management, storage). Fixed-size types only; every fd leaves here
/// wrapped in a SafeHandle. Other files add their families to this class (Libc.Files.cs) or use <see cref="Lib"/>.
/// </summary>
internal static unsafe partial class Libc
{
    /// <summary>
    /// The one library name of every import. The runtime maps "libc" to glibc's libc.so.6, and kvmps-vmm's NativeAOT
    /// build binds it at link time (DirectPInvoke "libc" in kvmps-vmm.csproj).
    /// </summary>
    internal const string Lib = "libc";

    public const int O_RDONLY = 0, O_RDWR = 2, O_CREAT = 0x40, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;

    public const int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2;
    public const int MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000, MAP_HUGETLB = 0x40000, MAP_POPULATE = 0x8000;
    public static readonly nint MAP_FAILED = -1;

    public const int MADV_DONTNEED = 4, MADV_REMOVE = 9, MADV_MERGEABLE = 12, MADV_HUGEPAGE = 14, MADV_DONTDUMP = 16;

    public const int MPOL_BIND = 2;
    public const int MPOL_MF_STRICT = 1, MPOL_MF_MOVE = 2;
    private const long SYS_mbind = 237;

    public const int EFD_CLOEXEC = 0x80000, EFD_NONBLOCK = 0x800;

    /// <summary><c>struct pollfd</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int fd;
        public short events;
        public short revents;
    }

    public const short POLLIN = 0x1, POLLERR = 0x8, POLLHUP = 0x10, POLLNVAL = 0x20;
    public const short POLLERR_HUP_NVAL = POLLERR | POLLHUP | POLLNVAL;

    [LibraryImport(Lib, EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    public const int EINTR = 4, EIO = 5, EAGAIN = 11, EWOULDBLOCK = EAGAIN, ENOMEM = 12, EACCES = 13, EEXIST = 17, ENOENT = 2, EPERM = 1, EOPNOTSUPP = 95;

    [LibraryImport(Lib, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Open(string path, int flags, int mode);

    [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Lib, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, nuint request, nint arg);

    [LibraryImport(Lib, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, nuint request, void* arg);

    [LibraryImport(Lib, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(Lib, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport(Lib, EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint addr, nuint length, int advice);

    [LibraryImport(Lib, EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall6(long number, nint a1, nuint a2, nint a3, nint a4, nuint a5, nuint a6);

    /// <summary>mbind(2); glibc has no wrapper (it lives in libnuma), so go through syscall(2).</summary>
    public static int Mbind(nint addr, nuint length, int mode, ulong* nodemask, nuint maxnode, uint flags)
        => (int)Syscall6(SYS_mbind, addr, length, mode, (nint)nodemask, maxnode, flags);

    [LibraryImport(Lib, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initval, int flags);

    [LibraryImport(Lib, EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, void* buf, nuint count);

    [LibraryImport(Lib, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, void* buf, nuint count);

    [LibraryImport(Lib, EntryPoint = "pthread_self")]
    public static partial nuint PthreadSelf();

    [LibraryImport(Lib, EntryPoint = "pthread_kill")]
    public static partial int PthreadKill(nuint thread, int sig);

    /// <summary>sizeof(pthread_attr_t): an opaque buffer to glibc's pthread_attr_* calls.</summary>
    public const int PthreadAttrBytes = 56;
    public const int PTHREAD_CREATE_DETACHED = 1;

    [LibraryImport(Lib, EntryPoint = "pthread_attr_init")]
    public static partial int PthreadAttrInit(void* attr);

    [LibraryImport(Lib, EntryPoint = "pthread_attr_setstacksize")]
    public static partial int PthreadAttrSetStackSize(void* attr, nuint stackBytes);

    [LibraryImport(Lib, EntryPoint = "pthread_attr_setdetachstate")]
    public static partial int PthreadAttrSetDetachState(void* attr, int state);

    [LibraryImport(Lib, EntryPoint = "pthread_attr_destroy")]
    public static partial int PthreadAttrDestroy(void* attr);

    /// <summary>sizeof(cpu_set_t): CPU masks of 1024 bits.</summary>
    public const int CpuSetBytes = 128;

    [LibraryImport(Lib, EntryPoint = "pthread_attr_setaffinity_np")]
    public static partial int PthreadAttrSetAffinity(void* attr, nuint maskBytes, void* mask);

    [LibraryImport(Lib, EntryPoint = "pthread_attr_getaffinity_np")]
    public static partial int PthreadAttrGetAffinity(void* attr, nuint maskBytes, void* mask);

    /// <summary>sched_getaffinity(2) of <paramref name="tid"/> (0: the calling thread).</summary>
    [LibraryImport(Lib, EntryPoint = "sched_getaffinity", SetLastError = true)]
    public static partial int SchedGetAffinity(int tid, nuint maskBytes, void* mask);

    [LibraryImport(Lib, EntryPoint = "sched_setaffinity", SetLastError = true)]
    public static partial int SchedSetAffinity(int tid, nuint maskBytes, void* mask);

    /// <summary>The CPU the calling thread runs on (from the vDSO), or -1.</summary>
    [LibraryImport(Lib, EntryPoint = "sched_getcpu")]
    public static partial int SchedGetCpu();

    /// <summary>pthread_create(3): returns 0 or an errno value (not through errno).</summary>
    [LibraryImport(Lib, EntryPoint = "pthread_create")]
    public static partial int PthreadCreate(out nuint thread, void* attr, delegate* unmanaged<nint, nint> start, nint arg);

    [LibraryImport(Lib, EntryPoint = "sigaction", SetLastError = true)]
    public static partial int Sigaction(int signum, SigAction* act, SigAction* oldact);

    [LibraryImport(Lib, EntryPoint = "getpid")]
    public static partial int GetPid();

    [LibraryImport(Lib, EntryPoint = "geteuid")]
    public static partial uint GetEuid();

    public const int LOCK_EX = 2, LOCK_NB = 4, LOCK_UN = 8;

    [LibraryImport(Lib, EntryPoint = "flock", SetLastError = true)]
    public static partial int Flock(int fd, int operation);

    [LibraryImport(Lib, EntryPoint = "umask")]
    public static partial uint Umask(uint mask);

    [LibraryImport(Lib, EntryPoint = "fchmod", SetLastError = true)]
    public static partial int Fchmod(int fd, uint mode);

    public const uint S_IFMT = 0xF000, S_IFSOCK = 0xC000, S_IFREG = 0x8000, S_IFDIR = 0x4000;
    public const int StatSize = 144, StatModeOffset = 24;

    [LibraryImport(Lib, EntryPoint = "lstat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Lstat(string path, byte* statbuf);

    /// <summary>The S_IFMT bits of a path (not following a final symlink), or 0 if it cannot be stat'ed.</summary>
    public static uint FileTypeOf(string path)
    {
        byte* buf = stackalloc byte[StatSize];
        return Lstat(path, buf) == 0 ? *(uint*)(buf + StatModeOffset) & S_IFMT : 0;
    }

    [LibraryImport(Lib, EntryPoint = "strerror")]
    private static partial nint StrError(int errnum);

    public static string ErrorText(int errno) => Marshal.PtrToStringUTF8(StrError(errno)) ?? $"errno {errno}";

    /// <summary>"No such file or directory (errno 2)".</summary>
    public static string Describe(int errno) => $"{ErrorText(errno)} (errno {errno})";

    public const int SA_SIGINFO = 4, SA_RESTORER = 0x04000000;

    /// <summary>glibc's <c>struct sigaction</c> on x86-64 (checked by LayoutTests).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct SigAction
    {
        public nint sa_handler;
        public fixed ulong sa_mask[16];
        public int sa_flags;
        public nint sa_restorer;
    }
}
