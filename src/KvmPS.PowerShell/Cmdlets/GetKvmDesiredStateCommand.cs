using System.Management.Automation;
using KvmPS.Management.DesiredState;

namespace KvmPS.Commands;

/// <summary>Get-KvmDesiredState: the VMs manifests name, what they ask and what the host has; plus unmanaged VMs with -IncludeUnmanaged.</summary>
[Cmdlet(VerbsCommon.Get, "KvmDesiredState")]
[OutputType(typeof(KvmPS.PowerShell.KvmDesiredVm), typeof(KvmPS.PowerShell.KvmVm))]
public sealed class GetKvmDesiredStateCommand : KvmDesiredStateCmdletBase
{
    /// <summary>Also output the VMs in the store that no manifest names (as KvmVm objects).</summary>
    [Parameter]
    public SwitchParameter IncludeUnmanaged { get; set; }

    protected override void EndWithManifests(DesiredHostState desired)
    {
        var status = new Reconciler(Manager).Get(desired);
        foreach (var vm in status.Vms)
            Output.WriteObject(new KvmPS.PowerShell.KvmDesiredVm(vm));
        if (IncludeUnmanaged.IsPresent)
            foreach (var vm in status.Unmanaged)
                Output.WriteObject(new KvmPS.PowerShell.KvmVm(vm));
        else if (status.Unmanaged.Count > 0)
            Output.WriteVerbose($"VMs not named in the manifests: {string.Join(", ", status.Unmanaged.Select(v => v.Name))}");
    }
}
