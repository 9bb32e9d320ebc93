using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;

namespace KvmPS.PowerShell;

/// <summary>
/// A VM as the cmdlets show it: its definition and live state at the time it was read (a snapshot; run
/// Get-KvmVm again for fresh state). Piped into the lifecycle cmdlets (<c>-Vm</c>), it selects the VM by name.
/// </summary>
public sealed class KvmVm
{
    public KvmVm(VmInfo info) => Info = info ?? throw new ArgumentNullException(nameof(info));

    /// <summary>The management layer's view, for scripts that need every detail. Hidden (as the records below are)
    /// so that <c>Format-List *</c> and <c>Select-Object *</c> show the flat properties, not a record dump.</summary>
    [Hidden]
    public VmInfo Info { get; }

    [Hidden]
    public VmDefinition Definition => Info.Definition;
    public string Name => Info.Name;
    public VmState State => Info.State;
    public string? StateReason => Info.StateReason;

    /// <summary>vCPUs: those present in the running VMM while active (hot-added count, ejected do not), else the definition's.</summary>
    public int ProcessorCount => Info.Live?.Vcpus ?? Definition.Vcpus.Count;

    public int MaximumProcessorCount => Definition.Vcpus.Maximum;
    public long MemoryStartupBytes => Definition.Memory.StartupBytes;
    public long MemoryMinimumBytes => Definition.Memory.MinimumBytes;
    public long MemoryMaximumBytes => Definition.Memory.MaximumBytes;

    /// <summary>
    /// Memory the running guest has: the boot memory plus what its virtio-mem driver has plugged (Hyper-V's
    /// MemoryAssigned); null when the VM is not running.
    /// </summary>
    public long? MemoryAssignedBytes => Info.Live?.MemoryCurrentBytes;

    /// <summary>Memory last asked of the running VM (Set-KvmMemory live; the guest plugs up to it in its own time); null without virtio-mem or not running.</summary>
    public long? MemoryDemandBytes => Info.Live?.MemoryRequestedBytes;

    /// <summary>Assigned memory while running, startup memory otherwise, in MiB.</summary>
    public long MemoryMB => (MemoryAssignedBytes ?? MemoryStartupBytes) / (1024 * 1024);

    /// <summary>Time since the guest booted; zero when not running.</summary>
    public TimeSpan Uptime => Info.Uptime ?? TimeSpan.Zero;

    /// <summary>The VM's CPU share against other VMs, 1-10000 (Set-KvmVcpu -RelativeWeight; 100: equal).</summary>
    public int CpuRelativeWeight => Definition.CpuRelativeWeight;

    /// <summary>The VM's CPU cap in percent of its vCPUs (Set-KvmVcpu -MaximumPercent; 100: none).</summary>
    public int CpuMaximumPercent => Definition.CpuMaximumPercent;

    /// <summary>What the VMM may use beyond guest RAM (Set-KvmMemory -VmmOverheadLimitBytes; 0: no limit).</summary>
    public long VmmOverheadLimitBytes => Definition.VmmOverheadLimitBytes;

    public int? ProcessId => Info.Pid;
    public bool IsActive => Info.IsActive;
    public bool BalloonEnabled => Definition.BalloonEnabled;
    public bool Autostart => Definition.Autostart;
    public string Notes => Definition.Notes;
    public BootSource Boot => Definition.Boot;
    public IReadOnlyList<DiskDefinition> Disks => Definition.Disks;
    public IReadOnlyList<NetworkAdapterDefinition> NetworkAdapters => Definition.NetworkAdapters;
    public string[] PciPassthrough => Definition.PciPassthrough.Select(a => a.ToString()).ToArray();

    /// <summary>The vfio-user servers' sockets whose devices the VM has.</summary>
    public string[] VfioUserDevices => Definition.VfioUserDevices.ToArray();

    /// <summary>The VM's folder in the store.</summary>
    public string Path => Info.VmDirectory;

    public string SerialLogPath => Info.SerialLogPath;
    public string SocketPath => Info.SocketPath;

    public override string ToString() => Name;
}
