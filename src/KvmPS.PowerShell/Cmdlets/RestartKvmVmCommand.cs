using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Restart-KvmVm: stops the VM (if it is active) and starts it again, picking up stored changes.</summary>
[Cmdlet(VerbsLifecycle.Restart, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmJob))]
public sealed class RestartKvmVmCommand : KvmVmCmdletBase
{
    [Parameter]
    public SwitchParameter TurnOff { get; set; }

    [Parameter]
    [ValidateRange(0, 3600)]
    public int? TimeoutSec { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    [Parameter]
    public SwitchParameter AsJob { get; set; }

    protected override void ProcessVm(string name)
    {
        if (!Output.ShouldProcess(name, "Restart VM"))
            return;
        var manager = Manager;
        var timeout = TimeoutSec is { } s ? TimeSpan.FromSeconds(s) : (TimeSpan?)null;
        var turnOff = TurnOff.IsPresent;
        var passThru = PassThru.IsPresent || AsJob.IsPresent;
        KvmJobs.RunOrQueue(this, AsJob.IsPresent, "Restart-KvmVm", name, output =>
        {
            var progress = output.Progress();
            var info = manager.Restart(name, timeout, turnOff, null, progress);
            if (passThru)
                output.WriteObject(new KvmVm(info));
        });
    }
}
