using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace KvmPS.Management.Networks;

/// <summary>An IPv4 subnet (<c>10.231.5.0/24</c>): network address and prefix length, with the address arithmetic networks need.</summary>
public readonly record struct Ipv4Subnet(uint Network, int PrefixLength)
{
    public uint Mask => PrefixLength == 0 ? 0 : uint.MaxValue << (32 - PrefixLength);
    public uint Broadcast => Network | ~Mask;
    public uint FirstHost => Network + 1;
    public uint LastHost => Broadcast - 1;
    public IPAddress NetmaskAddress => ToAddress(Mask);

    public bool Contains(uint address) => (address & Mask) == Network;
    public bool Contains(IPAddress address) => Contains(ToUInt32(address));

    /// <summary>Whether <paramref name="address"/> is a usable host address (inside, not the network or broadcast address).</summary>
    public bool IsHost(uint address) => Contains(address) && address != Network && address != Broadcast;

    public bool Overlaps(Ipv4Subnet other)
    {
        var mask = PrefixLength < other.PrefixLength ? Mask : other.Mask;
        return (Network & mask) == (other.Network & mask);
    }

    public override string ToString() => $"{ToAddress(Network)}/{PrefixLength.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>Parses <c>A.B.C.D/N</c> (or a bare address as /32); null with <paramref name="problem"/> set when it is not one.</summary>
    public static Ipv4Subnet? TryParse(string? text, out string? problem, bool requireNetworkAddress = true)
    {
        problem = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            problem = "is empty";
            return null;
        }
        var parts = text.Split('/');
        int prefix = 32;
        if (parts.Length > 2 || (parts.Length == 2 && !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out prefix)) || prefix > 32)
        {
            problem = "is not an IPv4 subnet in CIDR form (A.B.C.D/N)";
            return null;
        }
        if (!TryParseAddress(parts[0], out var address))
        {
            problem = "is not an IPv4 subnet in CIDR form (A.B.C.D/N)";
            return null;
        }
        var subnet = new Ipv4Subnet(0, prefix);
        var network = address & subnet.Mask;
        if (requireNetworkAddress && network != address)
        {
            problem = $"has host bits set (the subnet of that address is {new Ipv4Subnet(network, prefix)})";
            return null;
        }
        return new Ipv4Subnet(network, prefix);
    }

    /// <summary>A dotted-quad IPv4 address only (IPAddress.TryParse also takes "10", "10.1" and IPv6).</summary>
    public static bool TryParseAddress(string text, out uint address)
    {
        address = 0;
        var octets = text.Split('.');
        if (octets.Length != 4)
            return false;
        foreach (var octet in octets)
        {
            if (octet.Length is 0 or > 3 || !byte.TryParse(octet, NumberStyles.None, CultureInfo.InvariantCulture, out var b))
                return false;
            address = (address << 8) | b;
        }
        return true;
    }

    public static uint ToUInt32(IPAddress address)
    {
        if (address.AddressFamily != AddressFamily.InterNetwork)
            throw new ArgumentException($"'{address}' is not an IPv4 address", nameof(address));
        var b = address.GetAddressBytes();
        return ((uint)b[0] << 24) | ((uint)b[1] << 16) | ((uint)b[2] << 8) | b[3];
    }

    public static IPAddress ToAddress(uint value) =>
        new([(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value]);
}
