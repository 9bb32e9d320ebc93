using System.Globalization;
using KvmPS.Vm;

namespace KvmPS.Vmm;

/// <summary>Resident memory of this process, split into guest RAM and the VMM's own, from /proc/self/smaps.</summary>
public static class ProcessMemory
{
    public static (long TotalRss, long GuestRss) ReadRss(GuestMemory? guest)
    {
        long total = 0, guestRss = 0;
        var regions = guest?.Regions.Select(r => ((ulong)r.HostAddress, (ulong)r.HostAddress + r.SizeBytes)).ToArray() ?? [];
        bool inGuest = false;
        try
        {
            foreach (string line in File.ReadLines("/proc/self/smaps"))
            {
                if (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && line.IndexOf('-') is int dash and > 0 && line.IndexOf(' ') > dash)
                {
                    ulong start = ulong.Parse(line.AsSpan(0, dash), NumberStyles.HexNumber);
                    inGuest = regions.Any(r => start >= r.Item1 && start < r.Item2);
                }
                else if (line.StartsWith("Rss:", StringComparison.Ordinal))
                {
                    long kb = long.Parse(line.AsSpan(4).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
                    total += kb * 1024;
                    if (inGuest) guestRss += kb * 1024;
                }
            }
        }
        catch (IOException) { }
        return (total, guestRss);
    }
}
