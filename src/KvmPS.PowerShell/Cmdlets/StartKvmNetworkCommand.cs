using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Start-KvmNetwork: brings a network up (bridge with its address, dnsmasq, nftables rules). Starting an Active
/// network does nothing; a Degraded one is repaired (what is missing is made again).
/// </summary>
[Cmdlet(VerbsLifecycle.Start, "KvmNetwork", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmNetwork))]
public sealed class StartKvmNetworkCommand : KvmNetworkStateCmdletBase
{
    private protected override string CliVerb => "start";
    private protected override string Action => "Start network";

    private protected override KvmPS.Management.Networks.NetworkInfo Apply(string name) => Networks.Start(name);
}
