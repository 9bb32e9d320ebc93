using System.Globalization;
using System.Text;

namespace KvmPS.Management.Networks;

/// <summary>
/// The text KvmPS hands to nft and dnsmasq for a network: pure functions of the definition and the store, so the
/// files on disk can be compared with what the definition asks for (drift after a Set or a hand edit).
/// </summary>
internal static class NetworkHostConfig
{
    /// <summary>One table per network, <c>ip kvmps-NAME</c>: installed and deleted whole, so no other rule is ever touched.</summary>
    public static string TableName(string network) => "kvmps-" + network;

    /// <summary>
    /// The nft script: creating the table empty, deleting it and defining it again in one <c>nft -f</c> transaction
    /// replaces whatever the table held atomically (the kernel applies the file whole or not at all).
    /// </summary>
    public static string NftScript(NetworkDefinition network)
    {
        var table = TableName(network.Name);
        var bridge = Quote(network.BridgeName);
        var subnet = network.Subnet!;
        var s = new StringBuilder();
        s.Append("# Written by KvmPS for network '").Append(network.Name).Append("'; installed with nft -f, replaced whole on each start.\n");
        s.Append("table ip ").Append(table).Append(" {}\n");
        s.Append("delete table ip ").Append(table).Append('\n');
        s.Append("table ip ").Append(table).Append(" {\n");
        s.Append("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n");
        s.Append("\t\tiifname ").Append(bridge).Append(" oifname ").Append(bridge).Append(" accept\n");
        if (network.Mode == NetworkMode.Nat)
        {
            s.Append("\t\tiifname ").Append(bridge).Append(" ip saddr ").Append(subnet).Append(" accept\n");
            s.Append("\t\toifname ").Append(bridge).Append(" ip daddr ").Append(subnet).Append(" ct state established,related accept\n");
        }
        // Anything else in or out of the bridge is not ours to route: for Isolated that is everything.
        s.Append("\t\tiifname ").Append(bridge).Append(" drop\n");
        s.Append("\t\toifname ").Append(bridge).Append(" drop\n");
        s.Append("\t}\n");
        if (network.Mode == NetworkMode.Nat)
        {
            s.Append("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
            // Multicast and broadcast never leave by NAT (libvirt's rule too).
            s.Append("\t\tip saddr ").Append(subnet).Append(" ip daddr 224.0.0.0/24 return\n");
            s.Append("\t\tip saddr ").Append(subnet).Append(" ip daddr 255.255.255.255 return\n");
            s.Append("\t\tip saddr ").Append(subnet).Append(" ip daddr != ").Append(subnet).Append(" oifname != ").Append(bridge).Append(" masquerade\n");
            s.Append("\t}\n");
        }
        s.Append("}\n");
        return s.ToString();
    }

    public static string DnsmasqConfig(NetworkDefinition network, string stateDirectory)
    {
        var subnet = NetworkValidation.ParseSubnet(network.Name, network.Subnet!);
        var s = new StringBuilder();
        s.Append("# Written by KvmPS for network '").Append(network.Name).Append("'; replaced on each start.\n");
        s.Append("strict-order\n");
        s.Append("bind-interfaces\n");
        s.Append("interface=").Append(network.BridgeName).Append('\n');
        s.Append("except-interface=lo\n");
        s.Append("listen-address=").Append(network.Gateway).Append('\n');
        s.Append("dhcp-range=").Append(network.DhcpRangeStart).Append(',').Append(network.DhcpRangeEnd).Append(',').Append(subnet.NetmaskAddress).Append(",1h\n");
        var size = Ipv4Subnet.ToUInt32(network.DhcpRangeEnd!) - Ipv4Subnet.ToUInt32(network.DhcpRangeStart!) + 1 + (uint)(network.StaticLeases?.Count ?? 0);
        s.Append("dhcp-lease-max=").Append(size.ToString(CultureInfo.InvariantCulture)).Append('\n');
        s.Append("dhcp-authoritative\n");
        s.Append("dhcp-leasefile=").Append(Path.Combine(stateDirectory, "dnsmasq.leases")).Append('\n');
        s.Append("pid-file=").Append(Path.Combine(stateDirectory, "dnsmasq.pid")).Append('\n');
        s.Append("log-facility=").Append(Path.Combine(stateDirectory, "dnsmasq.log")).Append('\n');
        // The runtime folder is root's and 0700: dnsmasq keeps root to write its pid and lease files there.
        s.Append("user=root\n");
        if (network.Mode == NetworkMode.Isolated)
        {
            // No route out: guests get no default gateway and dnsmasq forwards no queries upstream.
            s.Append("dhcp-option=option:router\n");
            s.Append("no-resolv\n");
        }
        if (network.DnsDomain is { } domain)
        {
            s.Append("domain=").Append(domain).Append('\n');
            s.Append("local=/").Append(domain).Append("/\n");
            s.Append("expand-hosts\n");
        }
        foreach (var lease in network.StaticLeases ?? [])
        {
            s.Append("dhcp-host=").Append(lease.MacAddress).Append(',').Append(lease.Address);
            if (lease.HostName is { } host)
                s.Append(',').Append(host);
            s.Append('\n');
        }
        return s.ToString();
    }

    private static string Quote(string name) => "\"" + name + "\"";
}
