using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Contract;
using KvmPS.Interop;
using KvmPS.Threading;

namespace KvmPS.Sandbox;

/// <summary>
/// The kvmps-vmm sandbox (docs/confinement.md, "The VMM sandbox"): <c>no_new_privs</c>, then one seccomp filter per
/// thread, chosen by its <see cref="ThreadRole"/> and installed by <see cref="EngineThreads"/> in the new thread before
/// its body runs, as Firecracker filters its vCPU, API and VMM threads. A forbidden syscall raises SIGSYS
/// (<c>SECCOMP_RET_TRAP</c>); the handler writes one line naming the thread and the syscall to stderr (the VM's
/// vmm.log) and ends the process with <see cref="VmmExitCode.SandboxViolation"/>, so management reports the VM as
/// Crashed with the syscall named. Off unless <see cref="Enable"/> was called (kvmps-vmm does, unless <c>--sandbox off</c>).
/// </summary>
public static unsafe class VmmSandbox
{
    /// <summary>The first words of the line a violation writes (then <c>pid N: </c>); management looks for them in vmm.log.</summary>
    public const string ViolationPrefix = "kvmps-vmm: sandbox violation: ";

    /// <summary>Set (to a role name, or <c>main</c>) to make that thread call a syscall no filter allows once it is
    /// sandboxed: the way tests provoke a violation in the real binary.</summary>
    public const string SelfTestVariable = "KVMPS_SANDBOX_SELFTEST";

    /// <summary>The syscall the self-test calls: harmless, and in no allowlist.</summary>
    internal const string SelfTestSyscall = "getppid";

    private static volatile bool s_enabled;
    private static string? s_selfTestRole;
    private static readonly SeccompFilter?[] s_filters = new SeccompFilter?[Enum.GetValues<SandboxRole>().Length];

    [ThreadStatic] private static byte[]? t_who;

    /// <summary>True once <see cref="Enable"/> ran: every thread <see cref="EngineThreads"/> starts from then on is filtered.</summary>
    public static bool Enabled => s_enabled;

    /// <summary>
    /// Turns the sandbox on for this process: sets <c>no_new_privs</c>, installs the SIGSYS handler and the main
    /// thread's filter on every thread. Call before any engine thread starts. Throws
    /// <see cref="SandboxException"/> when the kernel refuses.
    /// </summary>
    public static void Enable()
    {
        if (s_enabled) return;
        if (Libc.Prctl(Libc.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            throw new SandboxException($"prctl(PR_SET_NO_NEW_PRIVS) failed: {Libc.Describe(Marshal.GetLastPInvokeError())}");
        _ = Syscalls.KnownName(0); // the table the SIGSYS handler reads names from, built now
        InstallSigsysHandler();
        // System.Console sets a terminal up on its first write (TCGETS, a pipe, signal handling): done now, so that a
        // thread whose filter has none of that can still write a line to stdout or stderr.
        Console.Out.Flush();
        Console.Error.Flush();
        Console.OpenStandardError().Write(ReadOnlySpan<byte>.Empty);
        Console.OpenStandardOutput().Write(ReadOnlySpan<byte>.Empty);
        // glibc's malloc gives a thread that first mallocs (zlib in a VNC viewer's thread, say) a new arena, and counts
        // the CPUs for that by opening /sys/devices/system/cpu/online, which no role's filter allows. With a fixed
        // arena limit it never counts; two arenas are plenty for the few threads that use malloc, and use less memory.
        Libc.Mallopt(Libc.M_ARENA_MAX, 2);
        _ = Environment.ProcessorCount;
        s_selfTestRole = Environment.GetEnvironmentVariable(SelfTestVariable);
        // The main thread's filter on every thread there is (TSYNC): the runtime's own (finalizer, early start-up
        // threads) get it too, and every thread created later inherits it beneath its role's filter.
        t_who = Encoding.ASCII.GetBytes($"the Main thread 'main' (tid {Libc.GetTid()})");
        int error = FilterFor(SandboxRole.Main).InstallOnThisThread(allThreads: true);
        if (error != 0)
            throw new SandboxException(error < 0
                ? $"seccomp(SECCOMP_FILTER_FLAG_TSYNC) failed: thread {-error} already has another filter"
                : $"seccomp(SECCOMP_SET_MODE_FILTER) failed: {Libc.Describe(error)}");
        s_enabled = true;
        if (s_selfTestRole is { } selfTest && string.Equals(selfTest, nameof(SandboxRole.Main), StringComparison.OrdinalIgnoreCase))
            SelfTestViolation();
    }

    /// <summary>
    /// After the jail (VmmJail): the main thread adds the set-up role's filter, which lacks the jail's calls (mounts,
    /// unshare, capset), so neither it nor a thread it starts later can make them. No-op while the sandbox is off.
    /// </summary>
    public static void NarrowMainThread()
    {
        if (!s_enabled) return;
        int error = FilterFor(SandboxRole.Setup).InstallOnThisThread();
        if (error != 0) throw new SandboxException($"the set-up filter could not be added to the main thread after the jail: {Libc.Describe(error)}");
    }

    /// <summary>
    /// The filter a role's threads get: built by the first thread of the role (off the main thread's path), or ahead
    /// (<see cref="BuildAhead"/>), then kept.
    /// </summary>
    public static SeccompFilter FilterFor(SandboxRole role) => s_filters[(int)role] ??= SandboxPolicy.FilterFor(role);

    /// <summary>
    /// Builds the filters of the roles whose first thread starts on the way to the guest's first output (a vCPU, the
    /// console writer) on the calling thread, while the main thread builds the machine: built by their first thread,
    /// they took ~0.4 ms of it. A thread that gets there first builds its own; both build the same filter.
    /// </summary>
    public static void BuildAhead(params SandboxRole[] roles)
    {
        if (!s_enabled) return;
        foreach (var role in roles) _ = FilterFor(role);
    }

    /// <summary>Filters the calling engine thread for <paramref name="role"/> (no-op while the sandbox is off).</summary>
    internal static void EnterThread(ThreadRole role, string name) => Enter(SandboxPolicy.RoleOf(role), name);

    private static void Enter(SandboxRole role, string name)
    {
        if (!s_enabled) return;
        t_who = Encoding.ASCII.GetBytes($"the {role} thread '{name}' (tid {Libc.GetTid()})");
        int error = FilterFor(role).InstallOnThisThread();
        if (error != 0)
        {
            // No filter means no sandbox: the VMM must not run on without one.
            Console.Error.WriteLine($"kvmps-vmm: error: the sandbox filter for the {role} thread '{name}' could not be installed: {Libc.Describe(error)}");
            Libc.ExitGroup(VmmExitCode.InternalError);
        }
        if (s_selfTestRole is { } selfTest && string.Equals(selfTest, role.ToString(), StringComparison.OrdinalIgnoreCase))
            SelfTestViolation();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void SelfTestViolation()
    {
        Console.Error.WriteLine($"kvmps-vmm: {SelfTestVariable}: calling {SelfTestSyscall}, which no filter allows");
        Libc.SyscallNoArgs(Syscalls.Number(SelfTestSyscall));
    }

    private static void InstallSigsysHandler()
    {
        var action = new Libc.SigAction
        {
            sa_handler = (nint)(delegate* unmanaged<int, nint, nint, void>)&OnSigsys,
            sa_flags = Libc.SA_SIGINFO,
        };
        if (Libc.Sigaction(Libc.SIGSYS, &action, null) != 0)
            throw new SandboxException($"sigaction(SIGSYS) failed: {Libc.Describe(Marshal.GetLastPInvokeError())}");
    }

    /// <summary>
    /// SIGSYS from a filter: only async-signal-safe work. No allocation, no lock: the line is assembled on the stack
    /// from bytes prepared before the filter was installed, written with write(2) to stderr, and the process ends
    /// with exit_group(2), skipping the runtime's shutdown (the thread was stopped in the middle of a syscall).
    /// </summary>
    [UnmanagedCallersOnly]
    private static void OnSigsys(int signal, nint info, nint context)
    {
        int code = *(int*)(info + Libc.SiginfoCode);
        int nr = *(int*)(info + Libc.SiginfoSyscall);
        Span<byte> line = stackalloc byte[512];
        int n = 0;
        n += Append(line[n..], "kvmps-vmm: sandbox violation: pid "u8);
        n += AppendNumber(line[n..], Libc.GetPid());
        n += Append(line[n..], ": "u8);
        n += Append(line[n..], t_who ?? "a thread (not an engine thread)"u8);
        n += Append(line[n..], " called "u8);
        if (code == Libc.SYS_SECCOMP && Syscalls.KnownName(nr) is { } name) n += AppendAscii(line[n..], name);
        else n += Append(line[n..], "syscall"u8);
        n += Append(line[n..], " ("u8);
        n += AppendNumber(line[n..], nr);
        n += Append(line[n..], "), which its seccomp filter forbids; the VMM exits (status 18)\n"u8);
        fixed (byte* p = line) Libc.Write(2, p, (nuint)n);
        Libc.ExitGroup(VmmExitCode.SandboxViolation);
    }

    private static int Append(Span<byte> to, ReadOnlySpan<byte> bytes)
    {
        int n = Math.Min(to.Length, bytes.Length);
        bytes[..n].CopyTo(to);
        return n;
    }

    private static int AppendAscii(Span<byte> to, string text)
    {
        int n = Math.Min(to.Length, text.Length);
        for (int i = 0; i < n; i++) to[i] = (byte)text[i];
        return n;
    }

    private static int AppendNumber(Span<byte> to, int value)
    {
        Span<byte> digits = stackalloc byte[12];
        int d = 0;
        uint v = value < 0 ? (uint)-(long)value : (uint)value;
        do { digits[d++] = (byte)('0' + v % 10); v /= 10; } while (v != 0);
        if (value < 0) digits[d++] = (byte)'-';
        int n = Math.Min(d, to.Length);
        for (int i = 0; i < n; i++) to[i] = digits[d - 1 - i];
        return n;
    }

    /// <summary>The seccomp mode of thread <paramref name="tid"/> of this process (the <c>Seccomp:</c> line of its status: 0 none, 2 filter).</summary>
    public static int SeccompModeOf(int pid, int tid)
    {
        foreach (string line in File.ReadLines($"/proc/{pid}/task/{tid}/status"))
            if (line.StartsWith("Seccomp:", StringComparison.Ordinal)) return int.Parse(line.AsSpan(8).Trim());
        return -1;
    }
}

/// <summary>The sandbox could not be set up.</summary>
public sealed class SandboxException(string message) : Exception(message);
