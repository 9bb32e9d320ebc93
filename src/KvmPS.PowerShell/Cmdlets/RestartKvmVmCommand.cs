using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Restart-KvmVm: stops the VM (if it is active) and starts it again, picking up stored changes.</summary>
[Cmdlet(VerbsLifecycle.Restart, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm), typeof(KvmJob))]
public sealed class RestartKvmVmCommand : KvmRemoteVmCmdletBase
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

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        if (TimeoutSec is not null)
            throw KvmParameterException.Combination("TimeoutSec", TimeoutSec, "-TimeoutSec is not available with -HostName (the remote kvmps uses its own shutdown timeout).");
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", "Restart VM"))
            return;
        var turnOff = TurnOff.IsPresent;
        var passThru = PassThru.IsPresent || AsJob.IsPresent;
        KvmJobs.RunOrQueue(this, AsJob.IsPresent, "Restart-KvmVm", name, output =>
        {
            var info = remote.Kvmps.Restart(name, turnOff);
            if (info.State is not (VmState.Running or VmState.Paused))
                output.WriteWarning($"VM '{name}' on host '{remote.Display}' is {info.State} right after restarting" + (info.StateReason is null ? "" : $": {info.StateReason}"));
            if (passThru)
                output.WriteObject(remote.Wrap(info));
        });
    }
}
