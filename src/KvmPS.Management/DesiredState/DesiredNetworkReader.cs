using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using KvmPS.Management.Definitions;
using KvmPS.Management.Manifests;
using KvmPS.Management.Networks;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// Reads a manifest's <c>Networks = @( @{ Name = 'lab'; Mode = 'Nat'; Bridge = 'kvbr-lab'; Subnet = '10.77.0.0/24';
/// Gateway = '10.77.0.1'; DhcpRange = @('10.77.0.100', '10.77.0.200'); StaticLeases = @( @{ Mac = '52:54:00:..'; Address = '10.77.0.10'; HostName = 'web1' } );
/// DnsDomain = 'lab'; Mtu = 1500; Autostart = $true; Ensure = 'Present' } )</c>. Keys are case-insensitive; every
/// problem names file:line:column, the key path (<c>Networks[0].Subnet</c>) and the bad value. Checks here need no
/// host (syntax, addresses inside the subnet); the host-dependent ones (a subnet overlapping a host route, a bridge in
/// use) are the network manager's when the network is created.
/// </summary>
internal static partial class DesiredNetworkReader
{
    public static readonly IReadOnlyList<string> NetworkKeys =
        ["Name", "Mode", "Bridge", "Subnet", "Gateway", "DhcpRange", "StaticLeases", "DnsDomain", "Mtu", "Autostart", "Ensure"];

    public static readonly IReadOnlyList<string> LeaseKeys = ["Mac", "Address", "HostName"];

    /// <summary>Settings a Bridge network (an existing host bridge, no services) cannot have.</summary>
    private static readonly string[] ServiceKeys = ["Subnet", "Gateway", "DhcpRange", "StaticLeases", "DnsDomain", "Mtu"];

    [GeneratedRegex("^[A-Za-z0-9_-]{1,32}$")]
    private static partial Regex NamePattern();

    public static void Read(PsdHashtable root, List<DesiredNetwork> networks)
    {
        if (!root.TryGetEntry("Networks", out var entry) || entry.Value is PsdNull)
            return;
        IReadOnlyList<PsdValue> items = entry.Value switch
        {
            PsdArray array => array.Items,
            PsdHashtable single => new PsdValue[] { single },
            var other => throw new DesiredStateException(other.Position, null, "Networks", $"must be a list of hashtables, not {DesiredStateReader.Describe(other)}"),
        };
        for (var i = 0; i < items.Count; i++)
        {
            var where = $"Networks[{i}]";
            if (items[i] is not PsdHashtable table)
                throw new DesiredStateException(items[i].Position, null, where, $"must be a hashtable (a network entry), not {DesiredStateReader.Describe(items[i])}");
            var network = ReadNetwork(table, where);
            if (networks.FirstOrDefault(n => n.Name == network.Name) is { } first)
                throw new DesiredStateException(table.Position, null, where + ".Name", $"network '{network.Name}' is declared twice (first at {first.Position})");
            if (network.Bridge is not null && networks.FirstOrDefault(n => n.Ensure == VmEnsure.Present && n.Bridge == network.Bridge) is { } sameBridge)
                throw new DesiredStateException(table.Position, null, where + ".Bridge", $"'{network.Bridge}' is also the bridge of network '{sameBridge.Name}' (at {sameBridge.Position})");
            networks.Add(network);
        }
    }

    private static DesiredNetwork ReadNetwork(PsdHashtable table, string where)
    {
        foreach (var key in table.Entries)
            if (!NetworkKeys.Contains(key.Key, StringComparer.OrdinalIgnoreCase))
                throw new DesiredStateException(key.KeyPosition, null, $"{where}.{key.Key}", $"unknown key '{key.Key}' (a network has: {string.Join(", ", NetworkKeys)})");
        var name = String(table, where, "Name") ?? throw new DesiredStateException(table.Position, null, where + ".Name", "is required");
        if (!NamePattern().IsMatch(name))
            throw new DesiredStateException(Value(table, "Name")!.Position, null, where + ".Name", $"'{name}' is not a valid network name (1-32 letters, digits, '-' or '_')");
        var ensure = VmEnsure.Present;
        if (String(table, where, "Ensure") is { } ensureText)
            ensure = Enum.TryParse<VmEnsure>(ensureText, ignoreCase: true, out var parsed) && Enum.IsDefined(parsed)
                ? parsed
                : throw new DesiredStateException(Value(table, "Ensure")!.Position, null, where + ".Ensure", $"'{ensureText}' is not one of 'Present', 'Absent'");
        if (ensure == VmEnsure.Absent)
            // Nothing else matters for a network that must not exist.
            return new DesiredNetwork { Name = name, Ensure = VmEnsure.Absent, Position = table.Position };

        var mode = NetworkMode.Nat;
        if (String(table, where, "Mode") is { } modeText)
            mode = Enum.TryParse<NetworkMode>(modeText, ignoreCase: true, out var m) && Enum.IsDefined(m)
                ? m
                : throw new DesiredStateException(Value(table, "Mode")!.Position, null, where + ".Mode", $"'{modeText}' is not one of 'Nat', 'Isolated', 'Bridge'");
        var bridge = String(table, where, "Bridge")
            ?? throw new DesiredStateException(table.Position, null, where + ".Bridge", $"is required for network '{name}' (the Linux bridge, at most 15 characters{(mode == NetworkMode.Bridge ? ", which must exist" : ", made by KvmPS")})");
        if (bridge.Length is 0 or > NetworkAdapterDefinition.MaximumInterfaceNameLength || bridge is "." or ".." || bridge.Any(c => c is '/' or ':' or '%' || char.IsWhiteSpace(c) || char.IsControl(c)))
            throw new DesiredStateException(Value(table, "Bridge")!.Position, null, where + ".Bridge", $"'{VmName.ForDisplay(bridge)}' is not a valid interface name (1-15 characters, no '/', ':', '%' or spaces)");

        if (mode == NetworkMode.Bridge)
        {
            foreach (var key in ServiceKeys)
                if (Value(table, key) is { } value and not PsdNull)
                    throw new DesiredStateException(value.Position, null, $"{where}.{key}", $"has no meaning for a Bridge network (it attaches to the existing bridge '{bridge}'; KvmPS runs no services on it)");
            return new DesiredNetwork { Name = name, Mode = mode, Bridge = bridge, Autostart = Bool(table, where, "Autostart"), Position = table.Position };
        }

        var subnetText = String(table, where, "Subnet")
            ?? throw new DesiredStateException(table.Position, null, where + ".Subnet", $"is required for a {mode} network (an IPv4 subnet like '10.77.0.0/24')");
        var subnet = ParseSubnet(subnetText) is { } s ? s
            : throw new DesiredStateException(Value(table, "Subnet")!.Position, null, where + ".Subnet", $"'{subnetText}' is not an IPv4 subnet in CIDR form with a prefix of 1-30 and no host bits (like '10.77.0.0/24')");

        var gateway = Address(table, where, "Gateway", subnet);
        IPAddress? rangeStart = null, rangeEnd = null;
        if (Value(table, "DhcpRange") is { } rangeValue and not PsdNull)
        {
            if (rangeValue is not PsdArray { Count: 2 } range)
                throw new DesiredStateException(rangeValue.Position, null, where + ".DhcpRange", $"must be two addresses @('first', 'last'), not {DesiredStateReader.Describe(rangeValue)}");
            rangeStart = InSubnet(range[0], where + ".DhcpRange[0]", subnet);
            rangeEnd = InSubnet(range[1], where + ".DhcpRange[1]", subnet);
            if (ToUInt(rangeStart) > ToUInt(rangeEnd))
                throw new DesiredStateException(rangeValue.Position, null, where + ".DhcpRange", $"starts at {rangeStart}, after its end {rangeEnd}");
        }

        int? mtu = null;
        if (Value(table, "Mtu") is { } mtuValue and not PsdNull)
            mtu = mtuValue is PsdNumber n && n.TryGetInt64(out var bytes) && bytes is >= 68 and <= 65535 ? (int)bytes
                : throw new DesiredStateException(mtuValue.Position, null, where + ".Mtu", $"must be a whole number of bytes from 68 to 65535, not {DesiredStateReader.Describe(mtuValue)}");

        return new DesiredNetwork
        {
            Name = name,
            Mode = mode,
            Bridge = bridge,
            Subnet = subnetText,
            Gateway = gateway,
            DhcpRangeStart = rangeStart,
            DhcpRangeEnd = rangeEnd,
            StaticLeases = Leases(table, where, subnet),
            DnsDomain = String(table, where, "DnsDomain"),
            Mtu = mtu,
            Autostart = Bool(table, where, "Autostart"),
            Position = table.Position,
        };
    }

    private static IReadOnlyList<DhcpStaticLease>? Leases(PsdHashtable table, string where, (uint Network, int Prefix) subnet)
    {
        if (Value(table, "StaticLeases") is not { } value || value is PsdNull)
            return null;
        IReadOnlyList<PsdValue> items = value switch
        {
            PsdArray array => array.Items,
            PsdHashtable single => new PsdValue[] { single },
            _ => throw new DesiredStateException(value.Position, null, where + ".StaticLeases", $"must be a list of hashtables @{{ Mac = '52:54:00:12:34:56'; Address = '10.77.0.10' }}, not {DesiredStateReader.Describe(value)}"),
        };
        var leases = new List<DhcpStaticLease>();
        for (var i = 0; i < items.Count; i++)
        {
            var at = $"{where}.StaticLeases[{i}]";
            if (items[i] is not PsdHashtable lease)
                throw new DesiredStateException(items[i].Position, null, at, $"must be a hashtable @{{ Mac = ...; Address = ... }}, not {DesiredStateReader.Describe(items[i])}");
            foreach (var key in lease.Entries)
                if (!LeaseKeys.Contains(key.Key, StringComparer.OrdinalIgnoreCase))
                    throw new DesiredStateException(key.KeyPosition, null, $"{at}.{key.Key}", $"unknown key '{key.Key}' (a lease has: {string.Join(", ", LeaseKeys)})");
            var macText = String(lease, at, "Mac") ?? throw new DesiredStateException(lease.Position, null, at + ".Mac", "is required (the adapter's MAC address)");
            MacAddress mac;
            try
            {
                mac = MacAddress.Parse(macText);
            }
            catch (ValueFormatException e)
            {
                throw new DesiredStateException(Value(lease, "Mac")!.Position, null, at + ".Mac", e.Message, e);
            }
            if (leases.FirstOrDefault(l => l.MacAddress == mac) is not null)
                throw new DesiredStateException(Value(lease, "Mac")!.Position, null, at + ".Mac", $"'{macText}' has a lease already");
            var address = Address(lease, at, "Address", subnet) ?? throw new DesiredStateException(lease.Position, null, at + ".Address", "is required (the IPv4 address the MAC gets)");
            if (leases.FirstOrDefault(l => l.Address.Equals(address)) is { } taken)
                throw new DesiredStateException(Value(lease, "Address")!.Position, null, at + ".Address", $"{address} is leased to {taken.MacAddress} already");
            leases.Add(new DhcpStaticLease(mac, address, String(lease, at, "HostName")));
        }
        return leases;
    }

    /// <summary>"10.77.0.0/24" → (network, prefix); null unless IPv4 with a prefix of 1-30 and no host bits.</summary>
    internal static (uint Network, int Prefix)? ParseSubnet(string text)
    {
        var slash = text.IndexOf('/');
        if (slash < 0 || !int.TryParse(text.AsSpan(slash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var prefix) || prefix is < 1 or > 30)
            return null;
        if (ParseIPv4(text[..slash]) is not { } address)
            return null;
        var value = ToUInt(address);
        return (value & ~Mask(prefix)) == 0 ? (value, prefix) : null;
    }

    private static IPAddress? Address(PsdHashtable table, string where, string key, (uint Network, int Prefix) subnet) =>
        Value(table, key) is { } value and not PsdNull ? InSubnet(value, $"{where}.{key}", subnet) : null;

    /// <summary>A host address of the subnet (not its network or broadcast address).</summary>
    private static IPAddress InSubnet(PsdValue value, string path, (uint Network, int Prefix) subnet)
    {
        if (value is not PsdString text || ParseIPv4(text.Value) is not { } address)
            throw new DesiredStateException(value.Position, null, path, $"must be an IPv4 address like '10.77.0.10', not {DesiredStateReader.Describe(value)}");
        var number = ToUInt(address);
        var mask = Mask(subnet.Prefix);
        var broadcast = subnet.Network | ~mask;
        if ((number & mask) != subnet.Network || number == subnet.Network || number == broadcast)
            throw new DesiredStateException(value.Position, null, path, $"{address} is not a host address of the subnet {ToAddress(subnet.Network)}/{subnet.Prefix}");
        return address;
    }

    private static IPAddress? ParseIPv4(string text) =>
        text.Count(c => c == '.') == 3 && IPAddress.TryParse(text, out var address) && address.AddressFamily == AddressFamily.InterNetwork ? address : null;

    private static uint ToUInt(IPAddress address) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(address.GetAddressBytes());

    private static IPAddress ToAddress(uint value)
    {
        var bytes = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        return new IPAddress(bytes);
    }

    private static uint Mask(int prefix) => prefix == 0 ? 0 : uint.MaxValue << (32 - prefix);

    private static PsdValue? Value(PsdHashtable table, string key) => table.TryGetEntry(key, out var entry) ? entry.Value : null;

    private static string? String(PsdHashtable table, string where, string key)
    {
        if (!table.TryGetEntry(key, out var entry) || entry.Value is PsdNull)
            return null;
        return entry.Value is PsdString s ? s.Value
            : throw new DesiredStateException(entry.Value.Position, null, $"{where}.{key}", $"must be a string, not {DesiredStateReader.Describe(entry.Value)}");
    }

    private static bool? Bool(PsdHashtable table, string where, string key)
    {
        if (!table.TryGetEntry(key, out var entry) || entry.Value is PsdNull)
            return null;
        return entry.Value is PsdBoolean b ? b.Value
            : throw new DesiredStateException(entry.Value.Position, null, $"{where}.{key}", $"must be $true or $false, not {DesiredStateReader.Describe(entry.Value)}");
    }
}
