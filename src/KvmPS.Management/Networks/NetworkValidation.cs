using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace KvmPS.Management.Networks;

/// <summary>
/// The checks a network definition passes on its own (no host, no other networks): name, bridge name, subnet, gateway,
/// DHCP range, static leases, DNS domain, MTU. <see cref="Normalize"/> also fills in the defaults (gateway = first host
/// address, DHCP range = gateway + 1 … last host address), so the store keeps what is in effect. Every refusal is a
/// <see cref="NetworkSettingException"/> naming the property and the value.
/// </summary>
public static partial class NetworkValidation
{
    public const int MaximumNameLength = 32;
    public const int MaximumBridgeNameLength = 15; // IFNAMSIZ 16 with the terminator
    public const int MinimumPrefixLength = 8;
    public const int MaximumPrefixLength = 30;

    [GeneratedRegex(@"\A[A-Za-z0-9][A-Za-z0-9_-]{0,31}\z")]
    private static partial Regex NamePattern();

    [GeneratedRegex(@"\A(?=.{1,253}\z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\z")]
    private static partial Regex DomainPattern();

    public static bool IsValidName(string? name) => name is not null && NamePattern().IsMatch(name);

    public static string ValidateName(string? name)
    {
        if (!IsValidName(name))
            throw new NetworkSettingException(name ?? "", "Name", Display(name ?? ""),
                $"is not a valid network name: use 1-{MaximumNameLength} letters, digits, '-' or '_', starting with a letter or digit");
        return name!;
    }

    /// <summary>Why <paramref name="name"/> is not a valid Linux interface name (the kernel's dev_valid_name), or null.</summary>
    public static string? BridgeNameProblem(string? name)
    {
        if (string.IsNullOrEmpty(name))
            return "is empty";
        if (name.Length > MaximumBridgeNameLength)
            return $"is longer than {MaximumBridgeNameLength} characters (the kernel's limit for interface names)";
        if (name is "." or ".." || name.Any(c => c is '/' or ':' or '\0' or '%' || char.IsWhiteSpace(c) || c > 0x7E || c < 0x21))
            return "is not a valid interface name (no '/', ':', '%', spaces or non-ASCII characters)";
        return null;
    }

    /// <summary>Checks <paramref name="definition"/> and returns it with the defaults filled in.</summary>
    public static NetworkDefinition Normalize(NetworkDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var name = ValidateName(definition.Name);
        if (!Enum.IsDefined(definition.Mode))
            throw Fail(name, "Mode", definition.Mode.ToString(), "is not Nat, Isolated or Bridge");
        if (BridgeNameProblem(definition.BridgeName) is { } bridgeProblem)
            throw Fail(name, "BridgeName", definition.BridgeName ?? "", bridgeProblem);
        if (definition.MtuBytes is { } mtu && (mtu < 68 || mtu > 65535))
            throw Fail(name, "MtuBytes", mtu.ToString(System.Globalization.CultureInfo.InvariantCulture), "must be between 68 and 65535");
        if (definition.Mode == NetworkMode.Bridge)
        {
            // The admin's bridge: KvmPS sets no address and runs no services, so IP settings would be silently ignored.
            foreach (var (property, value) in new (string, object?)[]
                     {
                         ("Subnet", definition.Subnet), ("Gateway", definition.Gateway), ("DhcpRangeStart", definition.DhcpRangeStart),
                         ("DhcpRangeEnd", definition.DhcpRangeEnd), ("DnsDomain", definition.DnsDomain), ("MtuBytes", definition.MtuBytes),
                         ("StaticLeases", definition.StaticLeases is { Count: > 0 } ? definition.StaticLeases.Count + " lease(s)" : null),
                     })
                if (value is not null)
                    throw Fail(name, property, value.ToString() ?? "", "applies only to Nat and Isolated networks (a Bridge network uses the host's bridge as it is)");
            return definition with { StaticLeases = [] };
        }
        if (definition.Subnet is null)
            throw Fail(name, "Subnet", "", $"is required for a {definition.Mode} network (IPv4 in CIDR form, e.g. 10.231.5.0/24)");
        var subnet = ParseSubnet(name, definition.Subnet);
        var gateway = HostAddress(name, subnet, "Gateway", definition.Gateway) ?? subnet.FirstHost;
        uint defaultStart = gateway == subnet.LastHost ? subnet.FirstHost : gateway + 1;
        var start = HostAddress(name, subnet, "DhcpRangeStart", definition.DhcpRangeStart) ?? defaultStart;
        var end = HostAddress(name, subnet, "DhcpRangeEnd", definition.DhcpRangeEnd) ?? subnet.LastHost;
        if (start > end)
            throw Fail(name, "DhcpRangeEnd", Ipv4Subnet.ToAddress(end).ToString(), $"is before DhcpRangeStart '{Ipv4Subnet.ToAddress(start)}'");
        if (gateway >= start && gateway <= end)
            throw Fail(name, definition.DhcpRangeStart is null && definition.DhcpRangeEnd is null ? "Gateway" : "DhcpRangeStart",
                definition.DhcpRangeStart is null && definition.DhcpRangeEnd is null ? Ipv4Subnet.ToAddress(gateway).ToString() : $"{Ipv4Subnet.ToAddress(start)}-{Ipv4Subnet.ToAddress(end)}",
                $"the DHCP range {Ipv4Subnet.ToAddress(start)}-{Ipv4Subnet.ToAddress(end)} contains the gateway {Ipv4Subnet.ToAddress(gateway)}");
        var leases = definition.StaticLeases ?? [];
        var macs = new Dictionary<Definitions.MacAddress, int>();
        var addresses = new Dictionary<uint, int>();
        for (var i = 0; i < leases.Count; i++)
        {
            var lease = leases[i] ?? throw Fail(name, $"StaticLeases[{i}]", "", "must not be null");
            var mac = lease.MacAddress;
            if (mac.IsZero || !mac.IsUnicast)
                throw Fail(name, $"StaticLeases[{i}].MacAddress", mac.ToString(), "must be a unicast address and not all zeros");
            if (!macs.TryAdd(mac, i))
                throw Fail(name, $"StaticLeases[{i}].MacAddress", mac.ToString(), $"is already used by StaticLeases[{macs[mac]}]");
            var address = HostAddress(name, subnet, $"StaticLeases[{i}].Address", lease.Address)!.Value;
            if (address == gateway)
                throw Fail(name, $"StaticLeases[{i}].Address", lease.Address.ToString(), "is the gateway address");
            if (!addresses.TryAdd(address, i))
                throw Fail(name, $"StaticLeases[{i}].Address", lease.Address.ToString(), $"is already used by StaticLeases[{addresses[address]}]");
            if (lease.HostName is { } host && (!DomainPattern().IsMatch(host) || host.Contains('.')))
                throw Fail(name, $"StaticLeases[{i}].HostName", host, "is not a valid host name (letters, digits and '-', no dots)");
        }
        if (definition.DnsDomain is { } domain && !DomainPattern().IsMatch(domain))
            throw Fail(name, "DnsDomain", domain, "is not a valid DNS domain (labels of letters, digits and '-', separated by dots)");
        return definition with
        {
            Subnet = subnet.ToString(),
            Gateway = Ipv4Subnet.ToAddress(gateway),
            DhcpRangeStart = Ipv4Subnet.ToAddress(start),
            DhcpRangeEnd = Ipv4Subnet.ToAddress(end),
            StaticLeases = leases.ToList(),
        };
    }

    public static Ipv4Subnet ParseSubnet(string name, string text)
    {
        var loose = Ipv4Subnet.TryParse(text, out var problem, requireNetworkAddress: false);
        if (loose is null)
            throw Fail(name, "Subnet", text, problem!);
        if (loose.Value.PrefixLength is < MinimumPrefixLength or > MaximumPrefixLength || !text.Contains('/'))
            throw Fail(name, "Subnet", text, $"must have a prefix length between /{MinimumPrefixLength} and /{MaximumPrefixLength}");
        var subnet = Ipv4Subnet.TryParse(text, out problem);
        if (subnet is null)
            throw Fail(name, "Subnet", text, problem!);
        return subnet.Value;
    }

    private static uint? HostAddress(string name, Ipv4Subnet subnet, string property, IPAddress? address)
    {
        if (address is null)
            return null;
        if (address.AddressFamily != AddressFamily.InterNetwork)
            throw Fail(name, property, address.ToString(), "is not an IPv4 address");
        var value = Ipv4Subnet.ToUInt32(address);
        if (!subnet.Contains(value))
            throw Fail(name, property, address.ToString(), $"is outside the subnet {subnet}");
        if (value == subnet.Network)
            throw Fail(name, property, address.ToString(), $"is the network address of {subnet}");
        if (value == subnet.Broadcast)
            throw Fail(name, property, address.ToString(), $"is the broadcast address of {subnet}");
        return value;
    }

    private static NetworkSettingException Fail(string name, string property, string value, string reason) => new(name, property, value, reason);

    private static string Display(string text) => Definitions.VmName.ForDisplay(text);
}
