using System.Management.Automation;
using KvmPS.Management.Networks;
using KvmPS.Management.Selection;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Get-KvmNetwork: the virtual networks with their settings, state (Active, Inactive, Degraded and why) and the VMs using them.</summary>
[Cmdlet(VerbsCommon.Get, "KvmNetwork")]
[OutputType(typeof(KvmNetwork))]
public sealed class GetKvmNetworkCommand : KvmNetworkCmdletBase
{
    /// <summary>Network names or wildcards; every network without it.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(NetworkNameCompleter))]
    [Alias("Network")]
    public string[]? Name { get; set; }

    protected override void ProcessLocal()
    {
        var networks = Networks.List();
        var byName = networks.ToDictionary(n => n.Name, StringComparer.Ordinal);
        var selection = VmSelector.Select(networks.Select(n => n.Name).ToList(), Name);
        foreach (var missing in selection.NotFound)
            // The manager's own message for a missing network (it names the store), as Remove and Start report it.
            ForTarget(missing, () => Networks.Get(missing));
        foreach (var name in selection.Names)
            Output.WriteObject(new KvmNetwork(byName[name]));
    }

    internal override void ProcessRemote(RemoteHost remote)
    {
        foreach (var network in remote.Select(Output, ["net", "list", "--json"], RemoteObject.Network, Name, "Network", KvmErrorIds.NetworkNotFound))
            Output.WriteObject(network);
    }
}
