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
        if (Count is null && Maximum is null)
            throw KvmParameterException.Combination(nameof(Count), null, "Give -Count, -Maximum or both.");
        LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
    }

    private string Describe()
    {
        var what = Count is { } c ? $"Set vCPU count to {c}" : "";
        if (Maximum is { } m)
            what += (what.Length > 0 ? " and " : "Set ") + $"the vCPU maximum to {m}";
        return what;
    }

    protected override void ProcessVm(string name)
    {
        var what = Describe();
        var scope = LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
        if (!Output.ShouldProcess(name, what + LiveChangeParameters.Describe(scope)))
            return;
        var count = Count ?? Manager.GetDefinition(name).Vcpus.Count;
        var result = Manager.SetVcpu(name, count, Maximum, scope);
        ReportChange(result, RestartIfNeeded.IsPresent);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var options = new List<string>(LiveChangeParameters.Arguments(Live.IsPresent, Config.IsPresent));
        if (Maximum is { } max)
            options.AddRange(["--maximum", Number(max)]);
        RemoteChange(remote, name, Describe() + LiveChangeParameters.Describe(LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent)), "setvcpus",
            options, Count is { } count ? [Number(count)] : [], PassThru.IsPresent, RestartIfNeeded.IsPresent);
    }
}
