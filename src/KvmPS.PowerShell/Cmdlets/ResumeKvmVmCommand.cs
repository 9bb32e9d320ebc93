using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Resume-KvmVm: Resumes every vCPU of the VM; guest memory and devices stay as they are.</summary>
[Cmdlet(VerbsLifecycle.Resume, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm))]
public sealed class ResumeKvmVmCommand : KvmRemoteVmCmdletBase
{
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        if (!Output.ShouldProcess(name, "Resume VM"))
            return;
        var info = Manager.Resume(name);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(info));
    }

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", "Resume VM"))
            return;
        var info = remote.Kvmps.Resume(name);
        if (PassThru.IsPresent)
            Output.WriteObject(remote.Wrap(info));
    }
}
