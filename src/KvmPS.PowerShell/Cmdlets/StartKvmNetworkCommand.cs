using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Start-KvmNetwork: brings a network up (bridge with its address, dnsmasq, nftables rules). Starting an Active
/// network does nothing; a Degraded one is repaired (what is missing is made again).
/// </summary>
[Cmdlet(VerbsLifecycle.Start, "KvmNetwork", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmNetwork))]
public sealed class StartKvmNetworkCommand : KvmNetworkCmdletBase
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
                if (!Output.ShouldProcess(name, "Start network"))
                    return;
                var info = Networks.Start(name);
                if (PassThru.IsPresent)
                    Output.WriteObject(new KvmNetwork(info));
            });
    }
}
