using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Save-KvmVm: saves a running or paused VM's memory and device state to the store and stops its VMM; the VM is Saved and Start-KvmVm resumes it (Hyper-V's Save-VM).</summary>
[Cmdlet(VerbsData.Save, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class SaveKvmVmCommand : KvmRemoteVmCmdletBase
{
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        if (!Output.ShouldProcess(name, "Save VM"))
            return;
        var info = Manager.Save(name);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(info));
    }

    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", "Save VM"))
            return;
        var saved = remote.RunVm(["vm", "save", "--json", "--", name]);
        if (PassThru.IsPresent)
            Output.WriteObject(saved);
    }
}
