using System.Globalization;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Networks;

/// <summary>
/// Reads dnsmasq's lease file: one lease a line, <c>EXPIRY MAC IP HOSTNAME CLIENT-ID</c> (expiry in Unix seconds, 0 for
/// an infinite lease; hostname <c>*</c> when the client gave none). Lines that are not IPv4 leases (DUID lines, IPv6) are skipped.
/// </summary>
internal static class DnsmasqLeaseFile
{
    public static IReadOnlyList<NetworkLease> Read(string network, string path)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return [];
        }
        var result = new List<NetworkLease>();
        foreach (var line in lines)
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 4 || !long.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var expiry)
                || !Ipv4Subnet.TryParseAddress(fields[2], out var address))
                continue;
            MacAddress mac;
            try
            {
                mac = MacAddress.Parse(fields[1]);
            }
            catch (ValueFormatException)
            {
                continue;
            }
            result.Add(new NetworkLease(network, mac, Ipv4Subnet.ToAddress(address), fields[3] == "*" ? null : fields[3],
                expiry == 0 ? null : DateTimeOffset.FromUnixTimeSeconds(expiry)));
        }
        return result;
    }
}
