using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace KvmPS.Management.Definitions;

/// <summary>A 6-byte Ethernet address, printed as lowercase <c>52:54:00:12:34:56</c>.</summary>
public readonly record struct MacAddress
{
    private readonly ulong _bits; // 48 bits, first octet in the most significant byte

    private MacAddress(ulong bits) => _bits = bits & 0xFFFF_FFFF_FFFF;

    public MacAddress(ReadOnlySpan<byte> octets)
    {
        if (octets.Length != 6)
            throw new ArgumentException("A MAC address has exactly 6 octets.", nameof(octets));
        ulong bits = 0;
        foreach (var octet in octets)
            bits = (bits << 8) | octet;
        _bits = bits;
    }

    public byte[] GetOctets()
    {
        var octets = new byte[6];
        for (var i = 0; i < 6; i++)
            octets[i] = (byte)(_bits >> (8 * (5 - i)));
        return octets;
    }

    /// <summary>Group (multicast/broadcast) bit clear: the only kind a NIC may own.</summary>
    public bool IsUnicast => ((_bits >> 40) & 0x01) == 0;

    /// <summary>Locally administered bit set: not from a vendor OUI, so it cannot clash with real hardware.</summary>
    public bool IsLocallyAdministered => ((_bits >> 40) & 0x02) != 0;

    public bool IsZero => _bits == 0;

    /// <summary>Parses <c>aa:bb:cc:dd:ee:ff</c> or <c>aa-bb-cc-dd-ee-ff</c> (any case).</summary>
    public static MacAddress Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(text.Contains('-') ? '-' : ':');
        if (parts.Length != 6)
            throw new ValueFormatException("MAC address", text, "expected six hex octets separated by ':' (e.g. 52:54:00:12:34:56)");
        ulong bits = 0;
        foreach (var part in parts)
        {
            if (part.Length != 2 || !byte.TryParse(part, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var octet))
                throw new ValueFormatException("MAC address", text, $"'{part}' is not a two-digit hex octet");
            bits = (bits << 8) | octet;
        }
        return new MacAddress(bits);
    }

    /// <summary>
    /// A stable locally administered unicast address <c>52:54:00:xx:xx:xx</c> derived from <paramref name="seed"/>
    /// (e.g. "vmname/adapterindex"). Deterministic on purpose: re-reading the same manifest must yield the same
    /// MAC, or the reconciler would see drift (and guests would see a new NIC) every time.
    /// </summary>
    public static MacAddress GenerateLocallyAdministered(string seed)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(seed));
        return new MacAddress(new byte[] { 0x52, 0x54, 0x00, hash[0], hash[1], hash[2] });
    }

    public override string ToString()
    {
        var octets = GetOctets();
        return string.Join(':', octets.Select(o => o.ToString("x2", CultureInfo.InvariantCulture)));
    }
}
