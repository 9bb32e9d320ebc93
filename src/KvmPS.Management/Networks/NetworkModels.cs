using System.Net;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Networks;

/// <summary>How a virtual network reaches the world (libvirt's forward modes, Hyper-V's switch types).</summary>
public enum NetworkMode
{
    /// <summary>A bridge with the gateway address, DHCP and DNS (dnsmasq), IPv4 forwarding and masquerade (nftables).</summary>
    Nat,
    /// <summary>A bridge with the gateway address, DHCP and DNS; no route out (Hyper-V's Internal switch).</summary>
    Isolated,
    /// <summary>An existing host bridge the admin made (to an uplink); KvmPS runs no services on it.</summary>
    Bridge,
}

/// <summary>A DHCP reservation: the adapter with <see cref="MacAddress"/> always gets <see cref="Address"/>.</summary>
public sealed record DhcpStaticLease(MacAddress MacAddress, IPAddress Address, string? HostName = null)
{
    /// <summary>"52:54:00:77:00:10=10.77.0.10 (web1)": dnsmasq's dhcp-host order, short enough for a list view.</summary>
    public override string ToString() => HostName is null ? $"{MacAddress}={Address}" : $"{MacAddress}={Address} ({HostName})";
}

/// <summary>
/// What the store keeps of a network (<c>&lt;store&gt;/networks/&lt;name&gt;.network.json</c>). For
/// <see cref="NetworkMode.Bridge"/> only <see cref="BridgeName"/> (an existing bridge) and <see cref="Autostart"/> apply.
/// </summary>
/// <param name="Name">Network name (letters, digits, '-', '_'; at most 32).</param>
/// <param name="BridgeName">The Linux bridge (at most 15 characters); made by KvmPS for Nat and Isolated.</param>
/// <param name="Subnet">IPv4 subnet in CIDR form, e.g. <c>10.231.5.0/24</c> (Nat, Isolated).</param>
/// <param name="Gateway">The bridge's address in <see cref="Subnet"/> (default: the first host address).</param>
/// <param name="DhcpRangeStart">First DHCP address (default: gateway + 1 … the last host address).</param>
/// <param name="DhcpRangeEnd">Last DHCP address.</param>
/// <param name="MtuBytes">The bridge's MTU (default: the kernel's, 1500).</param>
public sealed record NetworkDefinition(
    string Name,
    NetworkMode Mode,
    string BridgeName,
    string? Subnet = null,
    IPAddress? Gateway = null,
    IPAddress? DhcpRangeStart = null,
    IPAddress? DhcpRangeEnd = null,
    IReadOnlyList<DhcpStaticLease>? StaticLeases = null,
    string? DnsDomain = null,
    int? MtuBytes = null,
    bool Autostart = false);

/// <summary>Whether a network's host pieces are there.</summary>
public enum NetworkState
{
    /// <summary>Everything it needs is up: bridge (with address), dnsmasq, nftables rules.</summary>
    Active,
    /// <summary>Not started (none of its pieces exist).</summary>
    Inactive,
    /// <summary>Started, but a piece is missing or wrong (<see cref="NetworkInfo.Problems"/> says which): drift.</summary>
    Degraded,
}

/// <summary>A network as it is now on the host: its definition, its state and what is wrong, and the VMs using it.</summary>
public sealed record NetworkInfo(
    NetworkDefinition Definition,
    NetworkState State,
    IReadOnlyList<string> Problems,
    int? DnsmasqProcessId,
    IReadOnlyList<string> UsedBy)
{
    public string Name => Definition.Name;
    public override string ToString() => Name;
}

/// <summary>A DHCP lease as dnsmasq recorded it in the network's lease file.</summary>
public sealed record NetworkLease(string Network, MacAddress MacAddress, IPAddress Address, string? HostName, DateTimeOffset? ExpiresUtc);

/// <summary>One adapter of a VM with where it is attached and the addresses its MAC holds (from the lease file).</summary>
public sealed record VmNetworkAdapterAddresses(
    string VmName,
    int Index,
    MacAddress MacAddress,
    string? Network,
    string? BridgeName,
    string? TapName,
    IReadOnlyList<IPAddress> IPAddresses)
{
    /// <summary>The SR-IOV virtual function an SR-IOV adapter is (then Network, BridgeName and TapName are null).</summary>
    public PciAddress? SriovVf { get; init; }

    /// <summary>The SR-IOV adapter's VLAN, set on its VF; null: untagged.</summary>
    public int? VlanId { get; init; }
}
