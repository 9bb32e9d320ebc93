using System.Management.Automation;
using System.Net;
using KvmPS.Management.Networks;

namespace KvmPS.PowerShell;

/// <summary>
/// A virtual network as the cmdlets show it (Hyper-V's VMSwitch): its settings flat, its state when it was read and
/// the VMs using it. Piped into the network cmdlets it selects the network by <see cref="Name"/>.
/// </summary>
public sealed class KvmNetwork
{
    public KvmNetwork(NetworkInfo info) => Info = info ?? throw new ArgumentNullException(nameof(info));

    /// <summary>The management layer's view. Hidden so <c>Format-List *</c> shows the flat properties.</summary>
    [Hidden]
    public NetworkInfo Info { get; }

    [Hidden]
    public NetworkDefinition Definition => Info.Definition;

    public string Name => Info.Name;
    public NetworkMode Mode => Definition.Mode;
    public NetworkState State => Info.State;

    /// <summary>What is missing or wrong while <see cref="State"/> is Degraded.</summary>
    public IReadOnlyList<string> Problems => Info.Problems;

    public string BridgeName => Definition.BridgeName;
    public string? Subnet => Definition.Subnet;
    public IPAddress? Gateway => Definition.Gateway;
    public IPAddress? DhcpRangeStart => Definition.DhcpRangeStart;
    public IPAddress? DhcpRangeEnd => Definition.DhcpRangeEnd;
    public IReadOnlyList<DhcpStaticLease> StaticLeases => Definition.StaticLeases ?? [];
    public string? DnsDomain => Definition.DnsDomain;
    public int? Mtu => Definition.MtuBytes;
    public bool Autostart => Definition.Autostart;
    public int? DnsmasqProcessId => Info.DnsmasqProcessId;

    /// <summary>The VMs with an adapter on this network.</summary>
    public IReadOnlyList<string> UsedBy => Info.UsedBy;

    public override string ToString() => Name;
}
