using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Remove-KvmNetwork: stops a network (its bridge, dnsmasq and nftables rules go) and forgets it; refused while VMs
/// have adapters on it.
/// </summary>
[Cmdlet(VerbsCommon.Remove, "KvmNetwork", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(KvmNetwork))]
public sealed class RemoveKvmNetworkCommand : KvmNetworkCmdletBase
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(NetworkNameCompleter))]
    [Alias("Network")]
    public string[] Name { get; set; } = [];

    /// <summary>Write the removed network (as it was) to the pipeline.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessLocal()
    {
        foreach (var name in Name)
            ForTarget(name, () =>
            {
                var network = Networks.Get(name);
                if (!Output.ShouldProcess(name, $"Stop and remove {network.Definition.Mode} network (bridge '{network.Definition.BridgeName}')"))
                    return;
                Networks.Remove(name);
                if (PassThru.IsPresent)
                    Output.WriteObject(new KvmNetwork(network));
            });
    }

    internal override void ProcessRemote(RemoteHost remote)
    {
        ForEachRemote(remote, Name, n => n, "Stop and remove network", n => ["net", "remove", "--json", "--", n], RemoteObject.Network, PassThru.IsPresent);
    }
}
