using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>
/// The calls and structs for a seccomp sandbox (linux/seccomp.h, linux/filter.h, linux/audit.h): no_new_privs, a
/// classic-BPF filter installed on the calling thread, and what a trapped syscall leaves in <c>siginfo_t</c>.
/// Checked against the headers by LibcLayoutTests.
/// </summary>
internal static unsafe partial class Libc
{
    public const int PR_SET_NO_NEW_PRIVS = 38, PR_GET_NO_NEW_PRIVS = 39, PR_GET_SECCOMP = 21;
    public const uint SECCOMP_SET_MODE_FILTER = 1;
    public const long SYS_seccomp = 317, SYS_exit_group = 231, SYS_gettid = 186;

    public const uint SECCOMP_RET_KILL_PROCESS = 0x80000000, SECCOMP_RET_KILL_THREAD = 0, SECCOMP_RET_TRAP = 0x00030000,
        SECCOMP_RET_ERRNO = 0x00050000, SECCOMP_RET_ALLOW = 0x7fff0000, SECCOMP_RET_DATA = 0x0000ffff;

    /// <summary>AUDIT_ARCH_X86_64: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.</summary>
    public const uint AUDIT_ARCH_X86_64 = 0xC000003E;

    /// <summary>Offsets in <c>struct seccomp_data</c>: nr, arch, instruction_pointer, args[6].</summary>
    public const int SeccompDataNr = 0, SeccompDataArch = 4, SeccompDataArgs = 16;

    public const int SIGSYS = 31, SYS_SECCOMP = 1;
    /// <summary>Offsets in <c>siginfo_t</c> of si_code and of _sigsys._syscall / _arch (x86-64).</summary>
    public const int SiginfoCode = 8, SiginfoSyscall = 24, SiginfoArch = 28;

    public const int RLIMIT_CORE = 4, RLIMIT_NOFILE = 7;

    [LibraryImport(Lib, EntryPoint = "prctl", SetLastError = true)]
    public static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    /// <summary>mallopt's M_ARENA_MAX (malloc.h): with it set, glibc sizes its arena list without get_nprocs().</summary>
    public const int M_ARENA_MAX = -8;

    [LibraryImport(Lib, EntryPoint = "mallopt")]
    public static partial int Mallopt(int param, int value);

    [LibraryImport(Lib, EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall3(long number, nuint a1, nuint a2, nint a3);

    /// <summary>seccomp(2) SECCOMP_SET_MODE_FILTER: without flags the filter applies to the calling thread (and threads it creates later).</summary>
    public static int SeccompSetFilter(SockFprog* program, uint flags = 0) => (int)Syscall3(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, (nint)program);

    /// <summary>Install the filter on every thread of the process (which must have no filter, or one this thread's descends from).</summary>
    public const uint SECCOMP_FILTER_FLAG_TSYNC = 1;

    /// <summary>A syscall with no arguments, by number (the sandbox's self-test calls one its filter forbids).</summary>
    public static long SyscallNoArgs(long number) => Syscall3(number, 0, 0, 0);

    public const int PR_SET_NAME = 15;

    /// <summary>prctl(PR_SET_NAME): the calling thread's name in /proc/PID/task/TID/comm (at most 15 bytes are kept).</summary>
    public static void SetThreadName(string name)
    {
        byte* buffer = stackalloc byte[16];
        int n = 0;
        foreach (char c in name)
        {
            if (n == 15) break;
            buffer[n++] = c is > ' ' and < (char)127 ? (byte)c : (byte)'_';
        }
        buffer[n] = 0;
        Prctl(PR_SET_NAME, (nuint)buffer, 0, 0, 0);
    }

    /// <summary>gettid(2).</summary>
    public static int GetTid() => (int)Syscall3(SYS_gettid, 0, 0, 0);

    /// <summary>exit_group(2) straight away: no atexit handlers, no runtime shutdown (async-signal-safe).</summary>
    public static void ExitGroup(int status) => Syscall3(SYS_exit_group, (nuint)status, 0, 0);

    [LibraryImport(Lib, EntryPoint = "setrlimit", SetLastError = true)]
    public static partial int SetRlimit(int resource, RLimit* limit);

    /// <summary><c>struct rlimit</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct RLimit
    {
        public ulong rlim_cur;
        public ulong rlim_max;
    }
}

/// <summary><c>struct sock_filter</c> (linux/filter.h): one classic-BPF instruction, 8 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SockFilter
{
    public ushort code;
    public byte jt;
    public byte jf;
    public uint k;

    public SockFilter(ushort code, byte jt, byte jf, uint k) { this.code = code; this.jt = jt; this.jf = jf; this.k = k; }
}

/// <summary><c>struct sock_fprog</c> (linux/filter.h): a filter program, 16 bytes on x86-64.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct SockFprog
{
    public ushort len;
    public SockFilter* filter;
}
