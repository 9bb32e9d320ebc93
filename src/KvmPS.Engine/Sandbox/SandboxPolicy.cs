using KvmPS.Threading;

namespace KvmPS.Sandbox;

/// <summary>The filter a thread gets: its <see cref="ThreadRole"/>, plus the main thread.</summary>
public enum SandboxRole
{
    Main,
    Setup,
    Control,
    Migration,
    Vcpu,
    DeviceIo,
    TapReceive,
    DeviceWorker,
    HostSockets,
    Console,
    Vnc,
}

/// <summary>
/// The allowlist of each role (docs/confinement.md, "The VMM sandbox"). Derived by running the real VMM under
/// <c>strace -f</c> with every device, control request, snapshot, migration and hot-plug, per thread (threads name
/// themselves after their role), then kept to what each role needs.
/// <para>
/// Filters stack: a thread inherits the filter of the thread that created it, and adds its own. So a role's list
/// must hold the lists of the roles it starts threads for: the main thread, set-up and control threads start every
/// kind (vCPUs at boot and for <c>vcpu.set</c>, devices at boot and for <c>device.add</c>), and a vCPU thread starts
/// device threads when the guest driver sets DRIVER_OK. The narrow roles (device I/O, tap receive, device workers,
/// host sockets, console) start none.
/// </para>
/// </summary>
public static class SandboxPolicy
{
    /// <summary>What the NativeAOT runtime does on any thread: GC allocation and suspension, locks, thread exit, stderr.</summary>
    internal static readonly SyscallRule[] Runtime =
    [
        "futex", "sched_yield", "madvise", "mmap", "munmap", "mprotect", "mremap", "membarrier",
        "rt_sigprocmask", "rt_sigreturn", "tgkill", "gettid", "getpid", "clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday",
        "write", "close", "exit", "exit_group", "restart_syscall", "sched_getaffinity", "getrusage", "sysinfo", "brk", "sigaltstack",
        "set_robust_list", "rseq", "getcpu",
        // The GC's memory-limit check when a collection starts (getrlimit RLIMIT_AS): reading a limit, never setting one.
        new SyscallRule("prlimit64", Argument: 2, Values: [0]),
        // New threads (a lazily started runtime thread, or a device's thread): threads only, never a process.
        new SyscallRule("clone", Argument: 0, RequiredBits: 0x00010000 /* CLONE_THREAD */),
        // A new thread naming itself and adding its role's filter (EngineThreads) under the one it inherited: a filter
        // can only narrow what a thread may do.
        new SyscallRule("prctl", Argument: 0, Values: [15 /* PR_SET_NAME */]),
        new SyscallRule("seccomp", Argument: 0, Values: [1 /* SECCOMP_SET_MODE_FILTER */]),
        // The jail's drop to another user (VmmJail): glibc makes every thread change its own credentials (its set-xid
        // broadcast), so every thread must be allowed the three calls. Without CAP_SETUID/CAP_SETGID, which the drop
        // takes away, they can only set the ids the thread already has.
        "setresuid", "setresgid", "setgroups",
    ];

    /// <summary>
    /// Answered with an error instead of refused, on threads whose role does not allow them. clone3: ENOSYS, so glibc's
    /// pthread_create falls back to clone, whose flags the filter can read. openat/open: EACCES, because the runtime
    /// reads /proc and /sys files on whatever thread it happens to run (the GC's memory-load check when a collection
    /// starts, glibc counting CPUs) and copes with a failure; a thread that only moves bytes gains nothing from it,
    /// while a refusal would end the VM because some viewer's allocation started a GC.
    /// </summary>
    internal static readonly Dictionary<string, int> Enosys = new() { ["clone3"] = 38, ["openat"] = 13, ["open"] = 13 };

    /// <summary>The one ioctl a device thread makes: raise a legacy interrupt (KVM_IRQ_LINE). MSI goes by irqfd writes.</summary>
    /// An MSI-X vector's route (an eventfd, KVM_IRQFD, the GSI routing table) is made when the vector first fires, which
    /// is on a device thread when Linux's drivers run (the first completion interrupt comes from the I/O thread): seen
    /// as a sandbox violation in the RealLinux tests; after a restore, from the vsock host thread). So every thread that
    /// signals the guest may make those too.
    private static readonly SyscallRule DeviceIoctls = new("ioctl", Argument: 1,
        Values: [0x4008AE61 /* KVM_IRQ_LINE */, 0x4020AE76 /* KVM_IRQFD */, 0x4008AE6A /* KVM_SET_GSI_ROUTING */]);

    /// <summary>The console's: the UART's interrupt, and whether stdin/stdout is a terminal (TCGETS).</summary>
    private static readonly SyscallRule ConsoleIoctls = new("ioctl", Argument: 1, Values: [0x4008AE61 /* KVM_IRQ_LINE */, 0x5401 /* TCGETS */, 0x5402 /* TCSETS */, 0x5403 /* TCSETSW */, 0x5404 /* TCSETSF */]);

    // Device I/O threads: epoll on ioeventfds, virtqueue work (disk reads and writes), interrupts via irqfd writes.
    private static readonly SyscallRule[] DeviceIo =
    [
        "epoll_wait", "epoll_pwait", "read", "pread64", "pwrite64", "preadv", "pwritev", "fdatasync", "fsync", "fallocate", "ftruncate",
        "epoll_ctl", DeviceIoctls, "eventfd2", "lseek", "fstat", "newfstatat", "sendmsg", "recvmsg", "sendto", "recvfrom", "getrandom", "writev", "readv",
    ];

    // Tap receive: read frames from the tap, write into guest memory, signal the guest.
    private static readonly SyscallRule[] TapReceive = ["read", "readv", "writev", "poll", "ppoll", "epoll_wait", "epoll_pwait", "epoll_ctl", DeviceIoctls, "eventfd2"];

    // Timers and polls of devices (balloon stats, rng refills, hot-plug kicks).
    private static readonly SyscallRule[] DeviceWorker = ["read", "epoll_wait", "epoll_pwait", "poll", "ppoll", "getrandom", DeviceIoctls, "eventfd2", "fallocate"];

    /// <summary>
    /// Host-socket threads also serve the display's viewers (the VNC server): IFramebuffer.Refresh reads the framebuffer
    /// slot's dirty log (KVM_GET_DIRTY_LOG, a VM ioctl that only reads and resets that slot's log) on the viewer's thread.
    /// </summary>
    private static readonly SyscallRule HostSocketsIoctls = new("ioctl", Argument: 1,
        Values: [0x4008AE61 /* KVM_IRQ_LINE */, 0x4020AE76 /* KVM_IRQFD */, 0x4008AE6A /* KVM_SET_GSI_ROUTING */, 0x4010AE42 /* KVM_GET_DIRTY_LOG */, 0xAEC7 /* KVM_RESET_DIRTY_RINGS */]);

    // vsock's host side: Unix sockets, non-blocking.
    private static readonly SyscallRule[] HostSockets =
    [
        "epoll_wait", "epoll_pwait", "epoll_ctl", "read", "accept4", "connect", "socket", "sendmsg", "recvmsg", "sendto", "recvfrom",
        "shutdown", "getsockopt", "setsockopt", "fcntl", "unlink",
        // It signals the guest too: after a restore the first vsock interrupt may come from here (RealLinux tests).
        HostSocketsIoctls, "eventfd2",
    ];

    // Console: serial bytes to stdout, a file (rotated) or attached clients, and stdin to the UART.
    private static readonly SyscallRule[] Console =
    [
        "read", "pwrite64", ConsoleIoctls, "poll", "ppoll", "recvfrom", "recvmsg", "sendto", "sendmsg", "shutdown", "fsync", "fstat", "newfstatat", "lseek",
        "openat", "renameat", "renameat2", "rename", "unlinkat", "unlink", "fchmod", "fcntl", "setsockopt", "getsockopt",
        // Rotation looks at the rotated files by name.
        "stat", "lstat", "statx", "access", "faccessat", "faccessat2",
    ];

    // VNC: accept viewers, talk RFB on blocking sockets with timeouts, read the framebuffer (its KVM dirty log) and
    // raise the keyboard and mouse interrupts. Challenges come from getrandom; DES and zlib need no syscalls of their own.
    private static readonly SyscallRule VncIoctls = new("ioctl", Argument: 1,
        Values: [0x4008AE61 /* KVM_IRQ_LINE */, 0x4010AE42 /* KVM_GET_DIRTY_LOG */, 0xC018AEC0 /* KVM_CLEAR_DIRTY_LOG */, 0xAEC7 /* KVM_RESET_DIRTY_RINGS */]);
    private static readonly SyscallRule[] Vnc =
    [
        "poll", "ppoll", "accept", "accept4", "read", "recvfrom", "recvmsg", "sendto", "sendmsg", "writev", "shutdown",
        "setsockopt", "getsockopt", "getsockname", "getpeername", "fcntl", "getrandom", VncIoctls,
    ];

    // vCPU: KVM_RUN and the exits it serves (port and MMIO emulation, PCI config, ACPI hot-plug ejects tearing a device
    // down), plus every narrow role, whose threads a vCPU starts when a driver becomes ready.
    // Its ioctls are KVM's (type 0xAE): the vCPU's own, and the VM's for interrupts, ioeventfds, routing and the memory
    // slots of passthrough BARs the guest moves; and VFIO's (type 0x3B): a kernel-VFIO passthrough device's MSI-X
    // vectors are bound (VFIO_DEVICE_SET_IRQS) when the guest enables MSI-X with a config write. A vfio-user device's
    // messages are sendmsg/recvmsg on its socket, which the vCPU's narrow roles already allow. A passthrough vector's
    // eventfd moves between a KVM irqfd (KVM_IRQFD) and the I/O thread's epoll (epoll_ctl) on MSI-X table writes.
    private static readonly SyscallRule[] Vcpu = [new SyscallRule("ioctl", Argument: 1, Values: [0xAE00, 0x3B00], Mask: 0xFF00), "eventfd2", "epoll_create1", "fstat", "newfstatat", "flock", "fcntl"];

    // Set-up and everything a control request may do: build and rebuild the machine, open images, taps and sockets,
    // snapshots, migration, hot-plug. Still no exec, no new process, no ptrace, no mounts, no uid changes, no modules.
    private static readonly SyscallRule[] Broad =
    [
        "open", "openat", "stat", "lstat", "fstat", "newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat", "faccessat2",
        "readlink", "readlinkat", "getdents64", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
        "truncate", "chmod", "utimensat", "syncfs",
        "ftruncate", "fchmod", "fchmodat", "fchown", "flock", "fcntl", "dup", "dup2", "dup3", "pipe2", "lseek", "getcwd",
        "socket", "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername", "getsockopt", "setsockopt",
        "sendmsg", "recvmsg", "sendto", "recvfrom", "shutdown",
        "eventfd2", "epoll_create1", "epoll_ctl", "memfd_create", "mbind", "get_mempolicy", "set_mempolicy", "mlock", "munlock", "mincore",
        "prlimit64", "getrlimit", "uname", "getuid", "geteuid", "getgid", "getegid", "rt_sigaction", "rt_sigtimedwait", "sched_setaffinity",
        "timerfd_create", "timerfd_settime", "sync_file_range", "copy_file_range", "sendfile", "splice", "process_mrelease",
        "pread64", "pwrite64",
    ];

    /// <summary>
    /// The jail's set-up, on the main thread only (VmmJail, before any vCPU runs): the private root in the mount
    /// namespace taken before the filters (so no unshare here), and clearing capabilities. The main thread then narrows
    /// itself to the set-up role's filter (<see cref="VmmSandbox.NarrowMainThread"/>), so no thread keeps them.
    /// </summary>
    private static readonly SyscallRule[] Jail =
    [
        "mount", "umount2", "pivot_root", "chdir", "capset", "capget",
        // The control socket, its lock and an incoming migration socket, made as root, given to the jail's user.
        "lchown", "fchownat",
    ];

    private static readonly SyscallRule[] Hot = ["futex", "read", "write", "epoll_wait", "epoll_pwait", "sched_yield", "pread64", "pwrite64"];

    /// <summary>The allowlist of <paramref name="role"/>, hot syscalls first (the filter is a linear scan).</summary>
    public static IReadOnlyList<SyscallRule> RulesFor(SandboxRole role)
    {
        IEnumerable<SyscallRule> own = role switch
        {
            SandboxRole.DeviceIo => DeviceIo,
            SandboxRole.TapReceive => TapReceive,
            SandboxRole.DeviceWorker => DeviceWorker,
            SandboxRole.HostSockets => HostSockets,
            SandboxRole.Console => Console,
            SandboxRole.Vnc => Vnc,
            SandboxRole.Vcpu => VcpuAll,
            SandboxRole.Main => [new SyscallRule("ioctl"), .. VcpuAll, .. Console, .. Vnc, .. Broad, .. Jail],
            _ => [new SyscallRule("ioctl"), .. VcpuAll, .. Console, .. Vnc, .. Broad],
        };
        // ioctl first (KVM_RUN, in whatever form the role has it), then the hot ones, then the rest; a name given twice keeps its first rule.
        var ioctl = own.Where(o => o.Name == "ioctl").Take(1);
        var hot = Hot.Where(h => own.Any(o => o.Name == h.Name) || Runtime.Any(r => r.Name == h.Name));
        return [.. ioctl, .. hot, .. own, .. Runtime];
    }

    private static IEnumerable<SyscallRule> VcpuAll => [.. Vcpu, .. DeviceIo, .. TapReceive, .. DeviceWorker, .. HostSockets];

    /// <summary>The filter of <paramref name="role"/>.</summary>
    public static SeccompFilter FilterFor(SandboxRole role) => new(RulesFor(role), Interop.Libc.SECCOMP_RET_TRAP, Enosys);

    /// <summary>The sandbox role of an engine thread.</summary>
    public static SandboxRole RoleOf(ThreadRole role) => role switch
    {
        ThreadRole.Vcpu => SandboxRole.Vcpu,
        ThreadRole.DeviceIo => SandboxRole.DeviceIo,
        ThreadRole.TapReceive => SandboxRole.TapReceive,
        ThreadRole.DeviceWorker => SandboxRole.DeviceWorker,
        ThreadRole.HostSockets => SandboxRole.HostSockets,
        ThreadRole.Control => SandboxRole.Control,
        ThreadRole.Console => SandboxRole.Console,
        ThreadRole.Vnc => SandboxRole.Vnc,
        ThreadRole.Migration => SandboxRole.Migration,
        _ => SandboxRole.Setup,
    };
}
