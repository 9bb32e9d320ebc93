using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Stop-KvmVm: shuts the guest down (ACPI power button, then by force after the timeout), or turns it off.</summary>
[Cmdlet(VerbsLifecycle.Stop, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm), typeof(KvmJob))]
public sealed class StopKvmVmCommand : KvmRemoteVmCmdletBase
{
    /// <summary>Power off at once, without asking the guest (like pulling the plug).</summary>
    [Parameter]
    public SwitchParameter TurnOff { get; set; }

    /// <summary>
    /// As Hyper-V's Stop-VM -Force: shut down through the guest without asking, and turn the VM off if the guest has
    /// not powered off within -TimeoutSec (or does not handle the ACPI power button). Today's kvmps-vmm always falls
    /// back to turning off after the timeout, so without -Force the outcome is the same; once the VMM can press the
    /// power button alone, a shutdown without -Force that times out fails and leaves the VM running.
    /// </summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>How long a graceful shutdown may take before the VM is stopped by force (default 30 s).</summary>
    [Parameter]
    [ValidateRange(0, 3600)]
    public int? TimeoutSec { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    [Parameter]
    public SwitchParameter AsJob { get; set; }

    protected override void ProcessVm(string name)
    {
        if (!Output.ShouldProcess(name, TurnOff.IsPresent ? "Turn off VM" : "Shut down VM"))
            return;
        var manager = Manager;
        var timeout = TimeoutSec is { } s ? TimeSpan.FromSeconds(s) : (TimeSpan?)null;
        var turnOff = TurnOff.IsPresent;
        var passThru = PassThru.IsPresent || AsJob.IsPresent;
        KvmJobs.RunOrQueue(this, AsJob.IsPresent, "Stop-KvmVm", name, output =>
        {
            var result = manager.Stop(name, timeout, turnOff);
            if (result.IsWarning)
                output.WriteWarning(result.Message);
            else
                output.WriteVerbose(result.Message);
            if (passThru)
                output.WriteObject(new KvmVm(manager.Get(name)));
        });
    }

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        if (TimeoutSec is not null)
            throw KvmParameterException.Combination("TimeoutSec", TimeoutSec, "-TimeoutSec is not available with -HostName (the remote kvmps uses its own shutdown timeout).");
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", TurnOff.IsPresent ? "Turn off VM" : "Shut down VM"))
            return;
        var turnOff = TurnOff.IsPresent;
        var passThru = PassThru.IsPresent || AsJob.IsPresent;
        KvmJobs.RunOrQueue(this, AsJob.IsPresent, "Stop-KvmVm", name, output =>
        {
            var info = remote.Kvmps.Stop(name, turnOff);
            output.WriteVerbose($"VM '{name}' on host '{remote.Display}' is {info.State}.");
            if (passThru)
                output.WriteObject(remote.Wrap(info));
        });
    }
}
