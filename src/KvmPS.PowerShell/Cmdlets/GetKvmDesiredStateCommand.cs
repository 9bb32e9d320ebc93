using System.Management.Automation;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Remote;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Get-KvmDesiredState: the storage pools, networks, SR-IOV VF counts and VMs manifests name (in that order, the order
/// apply brings them up), what they ask and what the host has; plus unmanaged VMs with
/// -IncludeUnmanaged. For a manifest naming another host: RemoteDesiredVmStatus (and KvmRemoteVm) objects with its HostName.
/// </summary>
[Cmdlet(VerbsCommon.Get, "KvmDesiredState")]
[OutputType(typeof(KvmPS.PowerShell.KvmDesiredVm), typeof(KvmPS.PowerShell.KvmDesiredHostResource), typeof(KvmPS.PowerShell.KvmVm), typeof(RemoteDesiredVmStatus), typeof(KvmPS.PowerShell.KvmRemoteVm))]
public sealed class GetKvmDesiredStateCommand : KvmDesiredStateCmdletBase
{
    /// <summary>Also output the VMs in the store that no manifest names (as KvmVm objects; KvmRemoteVm for another host).</summary>
    [Parameter]
    public SwitchParameter IncludeUnmanaged { get; set; }

    protected override void EndWithManifests(DesiredHostState? desired, IReadOnlyList<RemoteManifestRun> remote)
    {
        if (desired is not null)
        {
            var status = new Reconciler(Manager).Get(desired);
            foreach (var pool in status.StoragePools)
                Output.WriteObject(new KvmPS.PowerShell.KvmDesiredHostResource(pool));
            foreach (var network in status.Networks)
                Output.WriteObject(new KvmPS.PowerShell.KvmDesiredHostResource(network));
            foreach (var sriov in status.HostSriov)
                Output.WriteObject(new KvmPS.PowerShell.KvmDesiredHostResource(sriov));
            foreach (var vm in status.Vms)
                Output.WriteObject(new KvmPS.PowerShell.KvmDesiredVm(vm));
            WriteUnmanaged(status.Unmanaged.Select(v => v.Name), status.Unmanaged.Select(v => (object)new KvmPS.PowerShell.KvmVm(v)), null);
        }
        foreach (var run in remote)
        {
            RemoteDesiredHostStatus status;
            try
            {
                status = run.Reconciler.Get(run.Text);
            }
            catch (RemoteHostException e)
            {
                Output.WriteError(RemoteHostErrors.Classify(e, run.Manifest.Path));
                continue;
            }
            foreach (var vm in status.Vms)
                Output.WriteObject(vm);
            WriteUnmanaged(status.Unmanaged.Select(v => v.Name),
                status.Unmanaged.Select(v => (object)new KvmPS.PowerShell.KvmRemoteVm(v, run.Manifest.Host.UserName, run.KeyFilePath)), $"host '{run.HostName}'");
        }
    }

    private void WriteUnmanaged(IEnumerable<string> names, IEnumerable<object> vms, string? where)
    {
        if (IncludeUnmanaged.IsPresent)
        {
            foreach (var vm in vms)
                Output.WriteObject(vm);
            return;
        }
        var list = names.ToList();
        if (list.Count > 0)
            Output.WriteVerbose(where is null
                ? $"VMs not named in the manifests: {string.Join(", ", list)}"
                : $"VMs on {where} not named in the manifests: {string.Join(", ", list)}");
    }
}
