using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Start-KvmVm: launches the VM's kvmps-vmm and waits until the guest runs.</summary>
[Cmdlet(VerbsLifecycle.Start, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm), typeof(KvmJob))]
public sealed class StartKvmVmCommand : KvmRemoteVmCmdletBase
{
    /// <summary>How long to wait for the VMM to report Running (default: the manager's 30 s).</summary>
    [Parameter]
    [ValidateRange(1, 3600)]
    public int? TimeoutSec { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    [Parameter]
    public SwitchParameter AsJob { get; set; }

    protected override void ProcessVm(string name)
    {
        if (!Output.ShouldProcess(name, "Start VM"))
            return;
        var manager = Manager;
        var timeout = TimeoutSec is { } s ? TimeSpan.FromSeconds(s) : (TimeSpan?)null;
        var passThru = PassThru.IsPresent || AsJob.IsPresent;
        KvmJobs.RunOrQueue(this, AsJob.IsPresent, "Start-KvmVm", name, output =>
        {
            var progress = output.Progress();
            var info = manager.Start(name, timeout, progress);
            if (info.State is not (VmState.Running or VmState.Paused))
                output.WriteWarning($"VM '{name}' is {info.State} right after starting" + (info.StateReason is null ? "" : $": {info.StateReason}"));
            if (passThru)
                output.WriteObject(new KvmVm(info));
        });
    }

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        if (TimeoutSec is not null)
            throw KvmParameterException.Combination("TimeoutSec", TimeoutSec, "-TimeoutSec is not available with -HostName (the remote kvmps uses its own start timeout).");
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", "Start VM"))
            return;
        var passThru = PassThru.IsPresent || AsJob.IsPresent;
        KvmJobs.RunOrQueue(this, AsJob.IsPresent, "Start-KvmVm", name, output =>
        {
            var info = remote.Kvmps.Start(name);
            if (info.State is not (VmState.Running or VmState.Paused))
                output.WriteWarning($"VM '{name}' on host '{remote.Display}' is {info.State} right after starting" + (info.StateReason is null ? "" : $": {info.StateReason}"));
            if (passThru)
                output.WriteObject(remote.Wrap(info));
        });
    }
}
