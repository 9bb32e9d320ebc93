using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Set-KvmMemory (Hyper-V's Set-VMMemory): the VM's startup memory and its range. Stored always; on a running VM
/// memory within the maximum it was started with is resized live where the VMM can (virtio-mem), else at restart.
/// </summary>
[Cmdlet(VerbsCommon.Set, "KvmMemory", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class SetKvmMemoryCommand : KvmRemoteVmCmdletBase
{
    [Parameter(Position = 1)]
    [ValidateRange(4096, long.MaxValue)]
    [Alias("MemoryStartupBytes")]
    public long? StartupBytes { get; set; }

    [Parameter]
    [ValidateRange(4096, long.MaxValue)]
    [Alias("MemoryMinimumBytes")]
    public long? MinimumBytes { get; set; }

    /// <summary>The ceiling for live growth; memory above the startup amount is added in 2 MiB blocks, so it must be a multiple of 2 MiB.</summary>
    [Parameter]
    [ValidateRange(4096, long.MaxValue)]
    [Alias("MemoryMaximumBytes")]
    public long? MaximumBytes { get; set; }

    /// <summary>
    /// Memory the VMM may use beyond guest RAM (its runtime, buffers, page tables): its cgroup's memory limit is
    /// MemoryMaximumBytes + this. 0: no limit; else at least 16 MiB. A running VM whose VMM has a cgroup of its own
    /// gets it at once.
    /// </summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long? VmmOverheadLimitBytes { get; set; }

    [Parameter]
    public SwitchParameter RestartIfNeeded { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Begin()
    {
        if (StartupBytes is null && MinimumBytes is null && MaximumBytes is null && VmmOverheadLimitBytes is null)
            throw KvmParameterException.Combination(nameof(StartupBytes), null, "Give -StartupBytes, -MinimumBytes, -MaximumBytes, -VmmOverheadLimitBytes or several of them.");
    }

    protected override void ProcessVm(string name)
    {
        if (!Output.ShouldProcess(name, "Set " + Describe()))
            return;
        var result = Manager.ChangeSettings(name, new VmSettingsChange
        {
            MemoryStartupBytes = StartupBytes,
            MemoryMinimumBytes = MinimumBytes,
            MemoryMaximumBytes = MaximumBytes,
            VmmOverheadLimitBytes = VmmOverheadLimitBytes,
        });
        ReportChange(result, RestartIfNeeded.IsPresent);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    private string Describe() => string.Join(" and ", new[]
    {
        StartupBytes is { } s ? $"startup memory to {DisplayText.Bytes(s)}" : null,
        MinimumBytes is { } min ? $"minimum memory to {DisplayText.Bytes(min)}" : null,
        MaximumBytes is { } max ? $"maximum memory to {DisplayText.Bytes(max)}" : null,
        VmmOverheadLimitBytes is { } o ? o == 0 ? "no limit on the VMM's memory overhead" : $"the VMM's memory overhead limit to {DisplayText.Bytes(o)}" : null,
    }.Where(t => t is not null));

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        if (VmmOverheadLimitBytes is { } overhead)
        {
            bool more = StartupBytes is not null || MinimumBytes is not null || MaximumBytes is not null;
            RemoteChange(remote, name, "Set " + Describe(), "setlimits", ["--vmm-overhead-limit", overhead == 0 ? "0" : Bytes(overhead)], [], PassThru.IsPresent && !more, RestartIfNeeded.IsPresent);
            if (!more) return;
        }
        var options = new List<string>();
        if (MinimumBytes is { } min)
            options.AddRange(["--minimum", Bytes(min)]);
        if (MaximumBytes is { } max)
            options.AddRange(["--maximum", Bytes(max)]);
        RemoteChange(remote, name, "Set " + Describe(), "setmem", options, StartupBytes is { } startup ? [Bytes(startup)] : [], PassThru.IsPresent, RestartIfNeeded.IsPresent);
    }
}
