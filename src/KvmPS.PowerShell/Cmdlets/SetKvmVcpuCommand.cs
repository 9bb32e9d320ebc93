using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Set-KvmVcpu: the VM's vCPU count and hot-add maximum; applied live where the VMM can, else at restart.</summary>
[Cmdlet(VerbsCommon.Set, "KvmVcpu", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class SetKvmVcpuCommand : KvmRemoteVmCmdletBase
{
    [Parameter(Position = 1)]
    [ValidateRange(1, VcpuSettings.Limit)]
    [Alias("ProcessorCount")]
    public int? Count { get; set; }

    [Parameter]
    [ValidateRange(1, VcpuSettings.Limit)]
    [Alias("MaximumProcessorCount")]
    public int? Maximum { get; set; }

    /// <summary>The VM's share of host CPU time against other VMs when the CPUs are busy, 1-10000 (Hyper-V's -RelativeWeight; 100: equal).</summary>
    [Parameter]
    [ValidateRange(1, VmResourceLimits.MaximumCpuRelativeWeight)]
    public int? RelativeWeight { get; set; }

    /// <summary>
    /// The most host CPU time the VM gets, in percent of its own vCPUs (Hyper-V's Set-VMProcessor -Maximum; named
    /// apart here because -Maximum is the vCPU ceiling): 1-100, 100 is no cap.
    /// </summary>
    [Parameter]
    [ValidateRange(1, VmResourceLimits.NoCpuCapPercent)]
    public int? MaximumPercent { get; set; }

    [Parameter]
    public SwitchParameter RestartIfNeeded { get; set; }

    /// <summary>Change the running VM now (and store it); refused, changing nothing, when it cannot take the change live.</summary>
    [Parameter]
    public SwitchParameter Live { get; set; }

    /// <summary>Store the change only: a running VM keeps its vCPUs until it is restarted.</summary>
    [Parameter]
    public SwitchParameter Config { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Begin()
    {
        if (Count is null && Maximum is null && RelativeWeight is null && MaximumPercent is null)
            throw KvmParameterException.Combination(nameof(Count), null, "Give -Count, -Maximum, -RelativeWeight, -MaximumPercent or several of them.");
        LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
    }

    private string Describe()
    {
        var what = Count is { } c ? $"Set vCPU count to {c}" : "";
        if (Maximum is { } m)
            what += (what.Length > 0 ? " and " : "Set ") + $"the vCPU maximum to {m}";
        if (RelativeWeight is { } w)
            what += (what.Length > 0 ? " and " : "Set ") + $"the CPU relative weight to {w}";
        if (MaximumPercent is { } p)
            what += (what.Length > 0 ? " and " : "Set ") + $"the CPU cap to {p}% of the VM's vCPUs";
        return what;
    }

    protected override void ProcessVm(string name)
    {
        var what = Describe();
        var scope = LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
        if (!Output.ShouldProcess(name, what + LiveChangeParameters.Describe(scope)))
            return;
        if (Count is not null || Maximum is not null)
        {
            var count = Count ?? Manager.GetDefinition(name).Vcpus.Count;
            ReportChange(Manager.SetVcpu(name, count, Maximum, scope), RestartIfNeeded.IsPresent);
        }
        if (RelativeWeight is not null || MaximumPercent is not null)
            ReportChange(Manager.ChangeSettings(name, new VmSettingsChange { CpuRelativeWeight = RelativeWeight, CpuMaximumPercent = MaximumPercent }, scope), RestartIfNeeded.IsPresent);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var options = new List<string>(LiveChangeParameters.Arguments(Live.IsPresent, Config.IsPresent));
        if (RelativeWeight is not null || MaximumPercent is not null)
        {
            // The limits go by kvmps vm setlimits, the vCPU count (if any) by setvcpus below.
            var limits = new List<string>(options);
            if (RelativeWeight is { } w) limits.AddRange(["--cpu-weight", Number(w)]);
            if (MaximumPercent is { } p) limits.AddRange(["--cpu-maximum-percent", Number(p)]);
            RemoteChange(remote, name, Describe(), "setlimits", limits, [], PassThru.IsPresent && Count is null && Maximum is null, RestartIfNeeded.IsPresent);
            if (Count is null && Maximum is null) return;
        }
        if (Maximum is { } max)
            options.AddRange(["--maximum", Number(max)]);
        RemoteChange(remote, name, Describe() + LiveChangeParameters.Describe(LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent)), "setvcpus",
            options, Count is { } count ? [Number(count)] : [], PassThru.IsPresent, RestartIfNeeded.IsPresent);
    }
}
