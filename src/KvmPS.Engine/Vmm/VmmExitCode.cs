namespace KvmPS.Vmm;

/// <summary>
/// kvmps-vmm's exit statuses (docs/vmm.md). All are even, so they never collide with the odd statuses of the
/// debug-exit port, <c>(value &lt;&lt; 1) | 1</c>.
/// </summary>
public static class VmmExitCode
{
    /// <summary>The guest powered off, or the VM was stopped by request or signal.</summary>
    public const int Ok = 0;
    /// <summary>Bad command line or configuration file.</summary>
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

    public static int ForDebugExit(int guestValue) => (guestValue << 1) | 1;
}
