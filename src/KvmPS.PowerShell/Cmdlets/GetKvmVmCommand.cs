using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Get-KvmVm: VMs with their live state; all of them without -Name.</summary>
[Cmdlet(VerbsCommon.Get, "KvmVm", DefaultParameterSetName = NameSet)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm))]
public sealed class GetKvmVmCommand : KvmRemoteCmdletBase
{
    internal const string NameSet = "Name";

    [Parameter(ParameterSetName = NameSet, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    [Alias("VMName")]
    public string[]? Name { get; set; }

    protected override void ProcessLocal()
    {
        var selection = VmResolver.Resolve(Manager.ListNames(), Name, null, allWhenEmpty: true);
        foreach (var missing in selection.NotFound)
            Output.WriteError(KvmErrorMapping.VmNotFound(missing, Manager.StoreRoot));
        foreach (var name in selection.Names)
            ForTarget(name, () =>
            {
                // Removed between listing and reading: a wildcard skips it, a plain name reports it.
                if (Manager.TryGet(name) is { } info)
                    Output.WriteObject(new KvmVm(info));
                else if (Name is not null && Name.Contains(name, StringComparer.Ordinal))
                    Output.WriteError(KvmErrorMapping.VmNotFound(name, Manager.StoreRoot));
            });
    }

    internal override void ProcessRemote(RemoteHost remote)
    {
        var vms = remote.Kvmps.List();
        var selection = VmResolver.Resolve(vms.Select(v => v.Name).ToList(), Name, null, allWhenEmpty: true);
        foreach (var missing in selection.NotFound)
            Output.WriteError(remote.VmNotFound(missing));
        foreach (var name in selection.Names)
            Output.WriteObject(remote.Wrap(vms.First(v => v.Name == name)));
    }
}
