using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Stop-KvmNetwork: takes a network down (its bridge, dnsmasq and nftables rules go; it stays defined). Refused while
/// running VMs use it; stopping an Inactive network does nothing.
/// </summary>
[Cmdlet(VerbsLifecycle.Stop, "KvmNetwork", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmNetwork))]
public sealed class StopKvmNetworkCommand : KvmNetworkCmdletBase
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(NetworkNameCompleter))]
    [Alias("Network")]
    public string[] Name { get; set; } = [];

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process()
    {
        foreach (var name in SelectNetworks(Name))
            ForTarget(name, () =>
            {
                if (!Output.ShouldProcess(name, "Stop network"))
                    return;
                var info = Networks.Stop(name);
                if (PassThru.IsPresent)
                    Output.WriteObject(new KvmNetwork(info));
            });
    }
}
