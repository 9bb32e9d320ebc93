using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Suspend-KvmVm: Pauses every vCPU of the VM; guest memory and devices stay as they are.</summary>
[Cmdlet(VerbsLifecycle.Suspend, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm))]
public sealed class SuspendKvmVmCommand : KvmRemoteVmCmdletBase
{
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        if (!Output.ShouldProcess(name, "Suspend VM"))
            return;
        var info = Manager.Suspend(name);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(info));
    }

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", "Suspend VM"))
            return;
        var info = remote.Kvmps.Suspend(name);
        if (PassThru.IsPresent)
            Output.WriteObject(remote.Wrap(info));
    }
}
