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
public sealed class InvokeKvmBalloonCommand : KvmRemoteVmCmdletBase
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
            if (!Output.ShouldProcess(name, Action(target)))
                return;
            var result = Manager.SetBalloon(name, target);
            ReportChange(result, RestartIfNeeded.IsPresent);
        }
        Output.WriteObject(VmMemoryStatusReader.Read(Manager, name));
    }

    private static string Action(long target) => $"Set the memory target to {DisplayText.Bytes(target)}";

    /// <summary>
    /// -HostName: kvmps vm balloon there (with the target when given and confirmed); its change reported as here, and
    /// its memory status as a KvmPS.RemoteVmMemoryStatus object (the VmMemoryStatus fields and HostName).
    /// </summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var set = TargetBytes is { } target && Output.ShouldProcess($"{name} on host {remote.Display}", Action(target));
        using var json = remote.Run(["vm", "balloon", "--json", "--", name, .. (set ? new[] { Bytes(TargetBytes!.Value) } : [])]);
        if (set)
            remote.ReportChange(this, json.RootElement, RestartIfNeeded.IsPresent);
        var status = RemoteObject.From(json.RootElement, remote, RemoteObject.MemoryStatus);
        status.Properties.Remove("Changes");
        Output.WriteObject(status);
    }
}
