using KvmPS.Interop;
using KvmPS.Sandbox;
using Xunit;

namespace KvmPS.Engine.Tests.Sandbox;

/// <summary>The BPF the sandbox builds, run by the filter's own interpreter (nothing is installed in the test process).</summary>
public class SeccompFilterTests
{
    private const uint Trap = Libc.SECCOMP_RET_TRAP, Allow = Libc.SECCOMP_RET_ALLOW;

    private static int Nr(string name) => Syscalls.Number(name);

    [Fact]
    public void OtherArchitecturesAndX32NumbersAreKilled()
    {
        var filter = new SeccompFilter(["read"]);
        Assert.Equal(Allow, filter.Evaluate(Nr("read"), []));
        Assert.Equal(Libc.SECCOMP_RET_KILL_PROCESS, filter.Evaluate(Nr("read"), [], arch: 0x40000003 /* AUDIT_ARCH_I386 */));
        Assert.Equal(Libc.SECCOMP_RET_KILL_PROCESS, filter.Evaluate(0x40000000 | Nr("read"), []));
    }

    [Fact]
    public void ListedSyscallsAreAllowedAndTheRestTrapped()
    {
        var filter = new SeccompFilter(["read", "write", "futex"]);
        foreach (var (nr, name) in Syscalls.All)
            Assert.Equal(name is "read" or "write" or "futex" ? Allow : Trap, filter.Evaluate(nr, []));
    }

    [Fact]
    public void ArgumentRulesCompareTheLow32Bits()
    {
        var filter = new SeccompFilter([new SyscallRule("ioctl", Argument: 1, Values: [0xAE80, 0x5401])]);
        Assert.Equal(Allow, filter.Evaluate(Nr("ioctl"), [3, 0xAE80]));
        Assert.Equal(Allow, filter.Evaluate(Nr("ioctl"), [3, 0xFFFFFFFF_00005401])); // the kernel reads the request as an unsigned int
        Assert.Equal(Trap, filter.Evaluate(Nr("ioctl"), [3, 0xAE81]));
        Assert.Equal(Trap, filter.Evaluate(Nr("read"), [3, 0xAE80]));
    }

    [Fact]
    public void MaskedRulesCompareAnIoctlsType()
    {
        var filter = new SeccompFilter([new SyscallRule("ioctl", Argument: 1, Values: [0xAE00], Mask: 0xFF00), "read"]);
        Assert.Equal(Allow, filter.Evaluate(Nr("ioctl"), [5, 0xAE80]));        // KVM_RUN
        Assert.Equal(Allow, filter.Evaluate(Nr("ioctl"), [5, 0x4008AE61]));    // KVM_IRQ_LINE
        Assert.Equal(Trap, filter.Evaluate(Nr("ioctl"), [5, 0x5412]));         // TIOCSTI
        Assert.Equal(Trap, filter.Evaluate(Nr("ioctl"), [5, 0x400454CA]));     // TUNSETIFF
        Assert.Equal(Allow, filter.Evaluate(Nr("read"), []));                  // the rule after the block is still reached
    }

    /// <summary>A display viewer (the VNC server, on the host-sockets role) refreshes the framebuffer: KVM_GET_DIRTY_LOG.</summary>
    [Theory]
    [InlineData(SandboxRole.HostSockets, true)]
    [InlineData(SandboxRole.Vcpu, true)]
    [InlineData(SandboxRole.DeviceIo, false)]
    [InlineData(SandboxRole.Console, false)]
    public void ADisplayViewerThreadMayReadTheFramebufferDirtyLog(SandboxRole role, bool allowed)
    {
        var filter = SandboxPolicy.FilterFor(role);
        Assert.Equal(allowed ? Allow : Trap, filter.Evaluate(Nr("ioctl"), [6, KvmConstants.KVM_GET_DIRTY_LOG]));
    }

    /// <summary>
    /// An MSI-X vector's route is made when it first fires, on a device thread under Linux's drivers (the RealLinux
    /// tests ended in a sandbox violation on eventfd2 from the I/O thread): every thread that raises interrupts may make
    /// one, and still nothing else of KVM's.
    /// </summary>
    [Theory]
    [InlineData(SandboxRole.DeviceIo)]
    [InlineData(SandboxRole.TapReceive)]
    [InlineData(SandboxRole.DeviceWorker)]
    [InlineData(SandboxRole.HostSockets)]
    public void DeviceThreadsMayMakeAnMsixRoute(SandboxRole role)
    {
        var filter = SandboxPolicy.FilterFor(role);
        Assert.Equal(Allow, filter.Evaluate(Nr("eventfd2"), [0, 0x80800]));
        Assert.Equal(Allow, filter.Evaluate(Nr("ioctl"), [6, KvmConstants.KVM_IRQFD]));
        Assert.Equal(Allow, filter.Evaluate(Nr("ioctl"), [6, KvmConstants.KVM_SET_GSI_ROUTING]));
        Assert.Equal(Allow, filter.Evaluate(Nr("ioctl"), [6, KvmConstants.KVM_IRQ_LINE]));
        Assert.Equal(Trap, filter.Evaluate(Nr("ioctl"), [6, KvmConstants.KVM_RUN]));
        Assert.Equal(Trap, filter.Evaluate(Nr("ioctl"), [6, KvmConstants.KVM_SET_USER_MEMORY_REGION]));
    }

    /// <summary>VNC threads talk RFB on sockets they are given, read the framebuffer's dirty log, raise IRQ 1/12: nothing more.</summary>
    [Fact]
    public void VncThreadsServeSocketsAndTheDisplayOnly()
    {
        var filter = SandboxPolicy.FilterFor(SandboxRole.Vnc);
        foreach (string name in new[] { "accept4", "recvfrom", "sendto", "poll", "shutdown", "setsockopt", "getrandom", "futex" })
            Assert.Equal(Allow, filter.Evaluate(Nr(name), [3, 0]));
        Assert.Equal(Allow, filter.Evaluate(Nr("ioctl"), [6, KvmConstants.KVM_IRQ_LINE]));
        Assert.Equal(Allow, filter.Evaluate(Nr("ioctl"), [6, KvmConstants.KVM_GET_DIRTY_LOG]));
        Assert.Equal(Allow, filter.Evaluate(Nr("ioctl"), [6, KvmConstants.KVM_CLEAR_DIRTY_LOG]));
        Assert.Equal(Trap, filter.Evaluate(Nr("ioctl"), [6, KvmConstants.KVM_RUN]));
        Assert.Equal(Trap, filter.Evaluate(Nr("ioctl"), [6, KvmConstants.KVM_SET_USER_MEMORY_REGION]));
        foreach (string name in new[] { "socket", "bind", "listen", "connect", "execve", "unlink", "memfd_create", "ptrace" })
            Assert.Equal(Trap, filter.Evaluate(Nr(name), [3, 0]));
        // Opening a file fails (EACCES) rather than ending the VM: the runtime's own reads of /proc and /sys cope.
        Assert.Equal(Libc.SECCOMP_RET_ERRNO | 13, filter.Evaluate(Nr("openat"), [3, 0]));
    }

    [Fact]
    public void CloneMakesThreadsOnlyAndClone3FallsBackToIt()
    {
        var filter = SandboxPolicy.FilterFor(SandboxRole.DeviceIo);
        const ulong threadFlags = 0x3d0f00; // glibc's pthread_create: CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
        Assert.Equal(Allow, filter.Evaluate(Nr("clone"), [threadFlags]));
        Assert.Equal(Trap, filter.Evaluate(Nr("clone"), [0x01200011])); // fork(): SIGCHLD|CHILD_SETTID|CHILD_CLEARTID
        Assert.Equal(Libc.SECCOMP_RET_ERRNO | 38, filter.Evaluate(Nr("clone3"), []));
    }

    public static TheoryData<SandboxRole> Roles() => [.. Enum.GetValues<SandboxRole>()];

    [Theory]
    [MemberData(nameof(Roles))]
    public void EveryRoleForbidsWhatNoVmmThreadNeeds(SandboxRole role)
    {
        var filter = SandboxPolicy.FilterFor(role);
        Assert.InRange(filter.Length, 10, 4096);
        foreach (string forbidden in new[] { "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev",
                     "chroot", "setuid", "setgid", "setreuid", "setfsuid", "init_module", "finit_module", "kexec_load", "bpf", "perf_event_open",
                     "keyctl", "add_key", "reboot", "swapon", "iopl", "ioperm", "setns", "personality", VmmSandbox.SelfTestSyscall })
            Assert.True(filter.Evaluate(Nr(forbidden), []) == Trap, $"{role} allows {forbidden}");
        // The jail's set-up (VmmJail) is the main thread's alone; its namespace is taken before any filter, so no
        // thread may unshare at all.
        foreach (string jail in new[] { "mount", "umount2", "pivot_root", "capset" })
            Assert.True(filter.Evaluate(Nr(jail), []) == (role == SandboxRole.Main ? Allow : Trap), $"{role}: {jail}");
        Assert.True(filter.Evaluate(Nr("unshare"), [0x00020000]) == Trap, $"{role} allows unshare(CLONE_NEWNS)");
        Assert.True(filter.Evaluate(Nr("unshare"), [0x10000000 /* CLONE_NEWUSER */]) == Trap, $"{role} allows unshare(CLONE_NEWUSER)");
        Assert.True(filter.Evaluate(Nr("unshare"), [0x00020000 | 0x40000000 /* CLONE_NEWNET */]) == Trap, $"{role} allows unshare(CLONE_NEWNS|CLONE_NEWNET)");
        // glibc makes every thread change its own ids when the jail drops to its user.
        foreach (string drop in new[] { "setresuid", "setresgid", "setgroups" })
            Assert.True(filter.Evaluate(Nr(drop), []) == Allow, $"{role} refuses {drop}");
        // What the runtime does on any thread.
        foreach (string runtime in new[] { "futex", "mmap", "munmap", "mprotect", "madvise", "sched_yield", "rt_sigprocmask", "gettid", "tgkill", "exit", "write" })
            Assert.True(filter.Evaluate(Nr(runtime), []) == Allow, $"{role} refuses {runtime}");
    }

    /// <summary>
    /// Filters stack: a thread keeps its creator's filter beneath its own. So whatever a role allows, the roles that
    /// start its threads must allow too: main/set-up/control start every kind, a vCPU starts device threads.
    /// </summary>
    [Theory]
    [InlineData(SandboxRole.Main)]
    [InlineData(SandboxRole.Setup)]
    [InlineData(SandboxRole.Control)]
    [InlineData(SandboxRole.Migration)]
    [InlineData(SandboxRole.Vcpu)]
    public void ARoleAllowsEverythingOfTheRolesWhoseThreadsItStarts(SandboxRole parent)
    {
        var children = parent == SandboxRole.Vcpu
            ? new[] { SandboxRole.DeviceIo, SandboxRole.TapReceive, SandboxRole.DeviceWorker, SandboxRole.HostSockets }
            // No thread is started with the main role: its extra calls (the jail's) are the main thread's alone.
            : Enum.GetValues<SandboxRole>().Where(r => r != SandboxRole.Main).ToArray();
        var parentFilter = SandboxPolicy.FilterFor(parent);
        ulong[][] argumentSamples = [[], [0x3d0f00], [1, 0x4008AE61], [1, 0x5401], [1, 0xAE80], [15], [1, 0]];
        foreach (var child in children)
        {
            var childFilter = SandboxPolicy.FilterFor(child);
            foreach (var (nr, name) in Syscalls.All)
                foreach (var args in argumentSamples)
                    if (childFilter.Evaluate(nr, args) == Allow)
                        Assert.True(parentFilter.Evaluate(nr, args) == Allow, $"{child} allows {name}({string.Join(", ", args.Select(a => $"0x{a:x}"))}) but {parent}, which starts its threads, does not");
        }
    }

    [Fact]
    public void AVcpuMakesOnlyKvmIoctlsAndOpensNoSocket()
    {
        var vcpu = SandboxPolicy.FilterFor(SandboxRole.Vcpu);
        Assert.Equal(Allow, vcpu.Evaluate(Nr("ioctl"), [9, 0xAE80]));
        Assert.Equal(Trap, vcpu.Evaluate(Nr("ioctl"), [9, 0x400454CA])); // TUNSETIFF
        Assert.Equal(Allow, vcpu.Evaluate(Nr("ioctl"), [9, 0x3B6E])); // VFIO_DEVICE_SET_IRQS: a passthrough device's MSI-X enable
        foreach (string name in new[] { "bind", "listen", "mkdir", "memfd_create", "rename" })
            Assert.Equal(Trap, vcpu.Evaluate(Nr(name), []));
    }

    [Fact]
    public void TheSyscallTableMatchesTheKernelHeader()
    {
        const string header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
        if (!File.Exists(header)) return; // linux-libc-dev not installed: the layout tests need it anyway
        var truth = File.ReadLines(header)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(p => p.Length == 3 && p[0] == "#define" && p[1].StartsWith("__NR_", StringComparison.Ordinal))
            .ToDictionary(p => p[1][5..], p => int.Parse(p[2]));
        foreach (var (name, number) in truth) Assert.Equal(number, Syscalls.Number(name));
        Assert.Equal("getppid", Syscalls.Name(110));
        Assert.Equal("syscall_9999", Syscalls.Name(9999));
    }
}
