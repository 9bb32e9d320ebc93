using System.Management.Automation;
using KvmPS.Management.Balloon;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Invoke-KvmBalloon: with -TargetBytes, sets the memory the balloon should leave the guest (stored; live where the
/// VMM supports it); without, reports the balloon and the guest's memory use.
/// </summary>
[Cmdlet(VerbsLifecycle.Invoke, "KvmBalloon", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(VmMemoryStatus))]
public sealed class InvokeKvmBalloonCommand : KvmVmCmdletBase
{
    [Parameter(Position = 1)]
    [ValidateRange(4096, long.MaxValue)]
    public long? TargetBytes { get; set; }

    [Parameter]
    public SwitchParameter RestartIfNeeded { get; set; }

    protected override void ProcessVm(string name)
    {
        if (TargetBytes is { } target)
        {
            if (!Output.ShouldProcess(name, $"Set the memory target to {DisplayText.Bytes(target)}"))
                return;
            var result = Manager.SetBalloon(name, target);
            ReportChange(result, RestartIfNeeded.IsPresent);
        }
        Output.WriteObject(VmMemoryStatusReader.Read(Manager, name));
    }
}
