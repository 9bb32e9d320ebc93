using KvmPS.Management.Definitions;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>Lifecycle state of a VM as seen from the host.</summary>
public enum VmState
{
    /// <summary>No VMM process (never started, stopped, or the guest powered off).</summary>
    Off,

    /// <summary>The VMM process exists but does not answer on its control socket yet (or no longer, while it exits).</summary>
    Starting,

    Running,
    Paused,

    /// <summary>The VMM stopped the VM and is exiting.</summary>
    Stopping,

    /// <summary>
    /// The guest crashed (the VMM stays up with the reason, see <see cref="VmInfo.StateReason"/>), or the VMM
    /// process died without shutting down cleanly (killed, or crashed itself).
    /// </summary>
    Crashed,

    /// <summary>The VMM answers, but with something management cannot read, or refuses this user (see <see cref="VmInfo.StateReason"/>).</summary>
    Unknown,

    /// <summary>No VMM runs, and the VM's memory and device state are saved in the store (Save-KvmVm); starting it resumes from there.</summary>
    Saved,

    /// <summary>
    /// The VMM process is alive and its control socket exists, but it did not answer in time, or every connection
    /// slot was busy (stalled, overloaded, stopped by SIGSTOP or a debugger). <see cref="VmInfo.StateReason"/> says how
    /// long it was waited for. The guest may be perfectly healthy: nothing stops or kills it on this state alone
    /// (a stop goes graceful first and forces only after its timeout; apply leaves the VM alone).
    /// </summary>
    Unresponsive,
}

/// <summary>Facts from the live VMM (<c>describe</c> + <c>status</c>); null when no VMM answers.</summary>
/// <param name="Vcpus">vCPUs present now (the VMM's <c>present_vcpus</c>: hot-added ones count, ejected ones do not).</param>
/// <param name="MaxVcpus">vCPUs the guest's ACPI tables allow for hot-add.</param>
/// <param name="MemoryBytes">Guest RAM the VMM booted with (virtio-mem adds to it: <see cref="MemoryCurrentBytes"/>).</param>
/// <param name="Boots">How many times the guest booted in this VMM (resets count).</param>
/// <param name="Exit">How the VM ended, once it has (crash reason and registers for a crash).</param>
public sealed record VmLiveInfo(
    int Vcpus,
    int MaxVcpus,
    long MemoryBytes,
    int Boots,
    bool NestedPvm,
    string? Kernel,
    string? Cmdline,
    string VmmVersion,
    VmmExitInfo? Exit)
{
    /// <summary>The VMM resizes guest memory live (<c>memory.set</c>, virtio-mem) within the maximum it was started with.</summary>
    public bool MemoryResize { get; init; }

    /// <summary>The VMM hot-plugs disks and network adapters (<c>device.add</c>, <c>device.remove</c>).</summary>
    public bool DeviceHotplug { get; init; }

    /// <summary>The definition's disks (paths as in the definition) the running VMM cannot remove (the boot disk; every configured one with an older VMM): removing one needs a restart.</summary>
    public IReadOnlySet<string> ColdPluggedDisks { get; init; } = new HashSet<string>();

    /// <summary>The definition's adapters (MACs) the running VMM cannot remove (configured ones with a VMM from before live removal of configured devices): removing one needs a restart.</summary>
    public IReadOnlySet<string> ColdPluggedAdapters { get; init; } = new HashSet<string>();

    /// <summary>The VMM removes configured devices live too (its describe marks devices <c>removable</c>).</summary>
    public bool RemovesConfiguredDevices { get; init; }

    /// <summary>The VMM answers <c>media.change</c> (DVD media in and out while it runs).</summary>
    public bool MediaChange { get; init; }

    /// <summary>The VMM runs in a cgroup of its own whose CPU and memory limits management writes live (docs/confinement.md, "cgroup limits").</summary>
    public bool CgroupLimits { get; init; }

    /// <summary>The memory ceiling the VMM was started with (virtio-mem); null without one.</summary>
    public long? MemoryMaximumBytes { get; init; }

    /// <summary>Total memory last asked for with <c>memory.set</c> (boot memory included); null without virtio-mem.</summary>
    public long? MemoryRequestedBytes { get; init; }

    /// <summary>
    /// Memory the guest has now: boot memory plus the blocks its virtio-mem driver has plugged (it follows
    /// <see cref="MemoryRequestedBytes"/> in its own time). Without virtio-mem, the boot memory.
    /// </summary>
    public long MemoryCurrentBytes => MemoryPluggedBytes is { } plugged ? MemoryBytes + plugged : MemoryBytes;

    /// <summary>Hot-plugged memory the guest has taken so far; null without virtio-mem.</summary>
    public long? MemoryPluggedBytes { get; init; }
}

/// <summary>A VM: its stored definition plus what is running now.</summary>
public sealed record VmInfo
{
    public required VmDefinition Definition { get; init; }
    public string Name => Definition.Name;
    public required VmState State { get; init; }

    /// <summary>Why the VM is in <see cref="State"/> when that needs explaining: the crash reason for <see cref="VmState.Crashed"/>, etc.</summary>
    public string? StateReason { get; init; }

    /// <summary>The kvmps-vmm process id while one exists (also for a guest crash the VMM stays up for).</summary>
    public int? Pid { get; init; }

    /// <summary>Time since the guest booted, from the VMM.</summary>
    public TimeSpan? Uptime { get; init; }

    public VmLiveInfo? Live { get; init; }

    public required string VmDirectory { get; init; }
    public required string SocketPath { get; init; }
    public required string SerialLogPath { get; init; }

    /// <summary>A VMM process exists (Starting, Running, Paused, Stopping, a Crashed VMM that stays up, Unknown, Unresponsive).</summary>
    public bool IsActive => Pid is not null && State is not VmState.Off;
}
