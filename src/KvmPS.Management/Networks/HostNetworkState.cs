using System.Text.Json;

namespace KvmPS.Management.Networks;

/// <summary>An interface as <c>ip -j -d link show</c> reports it.</summary>
internal sealed record HostLink(string Name, string? Alias, string? Kind, bool Up, int Mtu);

/// <summary>An IPv4 route of the main table as <c>ip -j -4 route show</c> reports it.</summary>
internal sealed record HostRoute(string Destination, string? Device);

/// <summary>Reads the host's (or the test namespace's) links, addresses and routes through <c>ip -j</c>.</summary>
internal static class HostNetworkState
{
    /// <summary>The ifalias KvmPS gives the bridges it makes: how a bridge is told apart from one the admin made.</summary>
    public static string OwnerAlias(string network) => "kvmps:" + network;

    public static HostLink? Link(HostCommands host, string name)
    {
        using var json = host.Json("ip", "-j", "-d", "link", "show", "dev", name);
        if (json is null || json.RootElement.GetArrayLength() == 0)
            return null;
        return ToLink(json.RootElement[0]);
    }

    public static IReadOnlyList<HostLink> Links(HostCommands host)
    {
        using var json = host.Json("ip", "-j", "-d", "link", "show");
        return json is null ? [] : json.RootElement.EnumerateArray().Select(ToLink).ToList();
    }

    /// <summary>The IPv4 addresses on <paramref name="device"/> as "A.B.C.D/N".</summary>
    public static IReadOnlyList<string> Addresses(HostCommands host, string device)
    {
        using var json = host.Json("ip", "-j", "-4", "addr", "show", "dev", device);
        if (json is null)
            return [];
        var result = new List<string>();
        foreach (var link in json.RootElement.EnumerateArray())
            if (link.TryGetProperty("addr_info", out var infos))
                foreach (var info in infos.EnumerateArray())
                    if (info.TryGetProperty("local", out var local) && info.TryGetProperty("prefixlen", out var prefix))
                        result.Add($"{local.GetString()}/{prefix.GetInt32()}");
        return result;
    }

    public static IReadOnlyList<HostRoute> Routes(HostCommands host)
    {
        using var json = host.Json("ip", "-j", "-4", "route", "show");
        if (json is null)
            return [];
        return json.RootElement.EnumerateArray()
            .Select(r => new HostRoute(r.TryGetProperty("dst", out var d) ? d.GetString() ?? "" : "", r.TryGetProperty("dev", out var dev) ? dev.GetString() : null))
            .ToList();
    }

    private static HostLink ToLink(JsonElement link)
    {
        string? kind = null;
        if (link.TryGetProperty("linkinfo", out var info) && info.TryGetProperty("info_kind", out var k))
            kind = k.GetString();
        var up = link.TryGetProperty("flags", out var flags) && flags.EnumerateArray().Any(f => f.GetString() == "UP");
        return new HostLink(
            link.GetProperty("ifname").GetString() ?? "",
            link.TryGetProperty("ifalias", out var alias) ? alias.GetString() : null,
            kind,
            up,
            link.TryGetProperty("mtu", out var mtu) ? mtu.GetInt32() : 0);
    }
}
