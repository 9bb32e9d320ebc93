using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Stop-KvmNetwork: takes a network down (its bridge, dnsmasq and nftables rules go; it stays defined). Refused while
/// running VMs use it; stopping an Inactive network does nothing.
/// </summary>
[Cmdlet(VerbsLifecycle.Stop, "KvmNetwork", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmNetwork))]
public sealed class StopKvmNetworkCommand : KvmNetworkStateCmdletBase
{
    private protected override string CliVerb => "stop";
    private protected override string Action => "Stop network";

    private protected override KvmPS.Management.Networks.NetworkInfo Apply(string name) => Networks.Stop(name);
}
