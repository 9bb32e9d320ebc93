namespace KvmPS.Management.Lifecycle;

/// <summary>
/// One VM's local live upgrade (<see cref="VmManager.Upgrade"/>): the VM now runs in a new kvmps-vmm process, the
/// binary on disk, with the same guest. <see cref="MemoryShared"/>: guest RAM went across as memfds (not copied).
/// </summary>
public sealed record VmUpgradeResult(string Name, int OldPid, int NewPid, string BinaryPath, bool MemoryShared, TimeSpan Total, TimeSpan? Downtime)
{
    /// <summary>The VM as it is after the upgrade.</summary>
    public required VmInfo Vm { get; init; }
}

/// <summary>
/// A local live upgrade failed: the new VMM did not start, refused the VM, or the migration failed or timed out. The VM
/// runs on in its old VMM (<see cref="OldPid"/>), the store is unchanged, and the new VMM is gone.
/// </summary>
public sealed class VmUpgradeException : VmManagementException
{
    public VmUpgradeException(string vmName, int oldPid, string message, string? logTail = null, Exception? inner = null)
        : base(vmName, message, inner)
    {
        OldPid = oldPid;
        LogTail = logTail ?? "";
    }

    /// <summary>The VMM that still runs the VM.</summary>
    public int OldPid { get; }

    /// <summary>What the new VMM wrote to vmm.log before it was stopped (its error line says why it refused).</summary>
    public string LogTail { get; }
}
