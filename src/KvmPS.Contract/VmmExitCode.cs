namespace KvmPS.Contract;

/// <summary>
/// kvmps-vmm's exit statuses (docs/vmm.md, "Exit status"). All are even, so they never collide with the odd statuses
/// of the debug-exit port, <c>(value &lt;&lt; 1) | 1</c>. Management reads them to explain a VMM that ended.
/// </summary>
public static class VmmExitCode
{
    /// <summary>The guest powered off, or the VM was stopped by request or signal.</summary>
    public const int Ok = 0;
    /// <summary>Bad command line, configuration file or snapshot.</summary>
    public const int UsageError = 2;
    /// <summary>/dev/kvm is missing, not permitted, or unusable.</summary>
    public const int KvmUnavailable = 4;
    /// <summary>The kernel, initrd, firmware or a disk image cannot be used.</summary>
    public const int BadImage = 6;
    /// <summary>A host resource cannot be had: guest memory, the control socket path (in use by another VMM), a tap or bridge.</summary>
    public const int HostResource = 8;
    /// <summary>The guest crashed: triple fault, KVM internal error (emulation failure), failed VM entry.</summary>
    public const int GuestCrashed = 10;
    /// <summary>An unexpected VMM failure (a bug).</summary>
    public const int InternalError = 12;
    /// <summary>The VM was live-migrated: it runs in the destination VMM now (docs/migration.md).</summary>
    public const int Migrated = 14;
    /// <summary>
    /// <c>--incoming</c>: no VM could be received: the stream was truncated, corrupt, of another format version, from
    /// a VM of another configuration, or the connection failed before the VM ran (docs/migration.md).
    /// </summary>
    public const int IncomingFailed = 16;
    /// <summary>
    /// A VMM thread made a system call its sandbox (seccomp filter) forbids; the VMM's stderr (vmm.log) has a line
    /// naming the thread and the syscall (docs/confinement.md, "The VMM sandbox").
    /// </summary>
    public const int SandboxViolation = 18;

    /// <summary>The status for a guest that wrote <paramref name="guestValue"/> to the debug-exit port (QEMU's isa-debug-exit).</summary>
    public static int ForDebugExit(int guestValue) => (guestValue << 1) | 1;

    /// <summary>True when <paramref name="status"/> came from the debug-exit port; <paramref name="guestValue"/> is what the guest wrote.</summary>
    public static bool IsDebugExit(int status, out int guestValue)
    {
        guestValue = status >> 1;
        return (status & 1) == 1;
    }

    /// <summary>What an exit status means, for messages.</summary>
    public static string Describe(int status) => status switch
    {
        Ok => "the guest powered off or the VM was stopped",
        UsageError => "bad command line or configuration",
        KvmUnavailable => "/dev/kvm is missing, not permitted, or KVM refused to create the VM",
        BadImage => "the kernel, initrd, firmware or a disk image cannot be used",
        HostResource => "a host resource is unavailable (guest memory, a tap or bridge, or the control socket is used by another kvmps-vmm)",
        GuestCrashed => "the guest crashed",
        InternalError => "internal VMM error",
        Migrated => "the VM was migrated to another VMM",
        IncomingFailed => "no VM could be received from the migration stream",
        SandboxViolation => "a VMM thread made a system call its sandbox forbids",
        _ when IsDebugExit(status, out int value) => $"the guest wrote {value} to the debug-exit port",
        _ => "unknown status",
    };
}
