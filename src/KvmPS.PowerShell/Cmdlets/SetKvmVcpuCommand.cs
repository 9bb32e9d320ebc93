using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Set-KvmVcpu: the VM's vCPU count and hot-add maximum; applied live where the VMM can, else at restart.</summary>
[Cmdlet(VerbsCommon.Set, "KvmVcpu", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class SetKvmVcpuCommand : KvmVmCmdletBase
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

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Begin()
    {
        if (Count is null && Maximum is null)
            throw KvmParameterException.Combination(nameof(Count), null, "Give -Count, -Maximum or both.");
    }

    protected override void ProcessVm(string name)
    {
        var what = Count is { } c ? $"Set vCPU count to {c}" : "";
        if (Maximum is { } m)
            what += (what.Length > 0 ? " and " : "Set ") + $"the vCPU maximum to {m}";
        if (!Output.ShouldProcess(name, what))
            return;
        var count = Count ?? Manager.GetDefinition(name).Vcpus.Count;
        var result = Manager.SetVcpu(name, count, Maximum);
        ReportChange(result, RestartIfNeeded.IsPresent);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
