using System.Collections;
using System.Management.Automation;
using System.Net;
using System.Net.Sockets;
using KvmPS.Management.Definitions;
using KvmPS.Management.Networks;
using KvmPS.Management.Selection;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Base of the network cmdlets: the <see cref="NetworkManager"/> over the cmdlets' store, made on first use, and
/// -HostName (kvmps net ... --json there).
/// </summary>
public abstract class KvmNetworkCmdletBase : KvmRemoteCmdletBase
{
    private NetworkManager? _networks;

    internal NetworkManager Networks => _networks ??= new NetworkManager(Manager.Store);

    /// <summary>Whether the caller gave <paramref name="parameter"/> (settings left out are kept or defaulted).</summary>
    internal bool Bound(string parameter) => MyInvocation.BoundParameters.ContainsKey(parameter);

    /// <summary>
    /// The networks <paramref name="patterns"/> name. Plain names pass through (the manager reports one that does not
    /// exist, with the store it looked in); wildcards expand over the defined networks, and one that matches none is an error.
    /// </summary>
    internal IReadOnlyList<string> SelectNetworks(IReadOnlyList<string> patterns)
    {
        if (!patterns.Any(WildcardPattern.ContainsWildcardCharacters))
            return patterns.Distinct(StringComparer.Ordinal).ToList();
        var selection = VmSelector.Select(Networks.List().Select(n => n.Name).ToList(), patterns);
        foreach (var missing in selection.NotFound)
            ForTarget(missing, () => Networks.Get(missing));
        return selection.Names;
    }

    /// <summary>The networks on <paramref name="remote"/> that <paramref name="patterns"/> name (plain names pass through, as here).</summary>
    internal IReadOnlyList<string> SelectRemoteNetworks(RemoteHost remote, IReadOnlyList<string> patterns) =>
        patterns.Any(WildcardPattern.ContainsWildcardCharacters)
            ? remote.Select(Output, ["net", "list", "--json"], RemoteObject.Network, patterns, "Network", KvmErrorIds.NetworkNotFound)
                .Select(n => (string)n.Properties["Name"].Value).ToList()
            : patterns.Distinct(StringComparer.Ordinal).ToList();
}

/// <summary>Turns the network cmdlets' text parameters into model values; a bad value names its parameter.</summary>
internal static class NetworkParameters
{
    /// <summary>An IPv4 address (null stays null).</summary>
    public static IPAddress? Address(string parameter, string? text)
    {
        if (text is null)
            return null;
        if (IPAddress.TryParse(text, out var address) && address.AddressFamily == AddressFamily.InterNetwork && text.Count(c => c == '.') == 3)
            return address;
        throw new KvmParameterException(parameter, text, $"'{text}' is not an IPv4 address (like 10.77.0.1)");
    }

    /// <summary>
    /// Static leases from hashtables <c>@{ MacAddress = '52:54:00:..'; IPAddress = '10.77.0.10'; HostName = 'web1' }</c>
    /// (Mac and Address are accepted as short keys, as in manifests) or from the StaticLeases of a piped network.
    /// </summary>
    public static IReadOnlyList<DhcpStaticLease> Leases(string parameter, object[]? items)
    {
        var leases = new List<DhcpStaticLease>();
        foreach (var raw in items ?? [])
        {
            var item = raw is PSObject ps ? ps.BaseObject : raw;
            switch (item)
            {
                case DhcpStaticLease lease:
                    leases.Add(lease);
                    break;
                case IDictionary table:
                    leases.Add(FromTable(parameter, table));
                    break;
                default:
                    throw new KvmParameterException(parameter, raw, $"each lease is a hashtable @{{ MacAddress = '52:54:00:12:34:56'; IPAddress = '10.77.0.10'; HostName = 'web1' }}, not '{raw}'");
            }
        }
        return leases;
    }

    private static DhcpStaticLease FromTable(string parameter, IDictionary table)
    {
        string? mac = null, ip = null, host = null;
        foreach (DictionaryEntry entry in table)
        {
            var key = entry.Key?.ToString() ?? "";
            var value = (entry.Value is PSObject ps ? ps.BaseObject : entry.Value)?.ToString();
            switch (key.ToLowerInvariant())
            {
                case "macaddress" or "mac":
                    mac = value;
                    break;
                case "ipaddress" or "address":
                    ip = value;
                    break;
                case "hostname":
                    host = string.IsNullOrEmpty(value) ? null : value;
                    break;
                default:
                    throw new KvmParameterException(parameter, key, $"unknown lease key '{key}' (a lease has MacAddress, IPAddress and HostName)");
            }
        }
        if (mac is null || ip is null)
            throw new KvmParameterException(parameter, mac ?? ip, "each lease needs MacAddress and IPAddress");
        var parsedMac = KvmParameterException.Parse(parameter, mac, MacAddress.Parse);
        return new DhcpStaticLease(parsedMac, Address(parameter, ip)!, host);
    }

    /// <summary>"Subnet 10.0.0.0/24 -> 10.1.0.0/24, Autostart False -> True": what a Set changes, for -WhatIf and -Verbose.</summary>
    public static IReadOnlyList<string> Differences(NetworkDefinition before, NetworkDefinition after)
    {
        var changes = new List<string>();
        void Compare(string property, object? old, object? now)
        {
            var a = Show(old);
            var b = Show(now);
            if (a != b)
                changes.Add($"{property} {a} -> {b}");
        }
        Compare("Mode", before.Mode, after.Mode);
        Compare("BridgeName", before.BridgeName, after.BridgeName);
        Compare("Subnet", before.Subnet, after.Subnet);
        Compare("Gateway", before.Gateway, after.Gateway);
        Compare("DhcpRangeStart", before.DhcpRangeStart, after.DhcpRangeStart);
        Compare("DhcpRangeEnd", before.DhcpRangeEnd, after.DhcpRangeEnd);
        Compare("StaticLease", LeasesText(before.StaticLeases), LeasesText(after.StaticLeases));
        Compare("DnsDomain", before.DnsDomain, after.DnsDomain);
        Compare("Mtu", before.MtuBytes, after.MtuBytes);
        Compare("Autostart", before.Autostart, after.Autostart);
        return changes;
    }

    /// <summary>
    /// The settings given to New-/Set-KvmNetwork as <c>kvmps net create|set</c> options (for -HostName): only those
    /// bound, each in the CLI's form (leases as <c>MAC=IP[=HOST],...</c>; an empty value clears a setting).
    /// </summary>
    public static List<string> CliOptions(KvmNetworkCmdletBase cmdlet, NetworkMode? mode, string? bridge, string? subnet, string? gateway,
        string? dhcpStart, string? dhcpEnd, object[]? leases, string? domain, int? mtu)
    {
        var options = new List<string>();
        void Add(string option, string? value)
        {
            if (value is not null)
                options.AddRange([option, value]);
        }
        Add("--mode", mode?.ToString().ToLowerInvariant());
        Add("--bridge", bridge);
        Add("--subnet", subnet);
        Add("--gateway", Address("Gateway", gateway)?.ToString());
        Add("--dhcp-start", Address("DhcpRangeStart", dhcpStart)?.ToString());
        Add("--dhcp-end", Address("DhcpRangeEnd", dhcpEnd)?.ToString());
        if (leases is not null)
            Add("--leases", string.Join(",", Leases("StaticLease", leases).Select(l => $"{l.MacAddress}={l.Address}" + (l.HostName is null ? "" : "=" + l.HostName))));
        if (cmdlet.Bound("DnsDomain"))
            Add("--domain", domain ?? "");
        if (mtu is { } bytes)
            Add("--mtu", bytes.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return options;
    }

    public static string LeasesText(IReadOnlyList<DhcpStaticLease>? leases) =>
        leases is null || leases.Count == 0 ? "" : string.Join(" ", leases.Select(l => $"{l.MacAddress}={l.Address}" + (l.HostName is null ? "" : $"({l.HostName})")));

    private static string Show(object? value) => value switch
    {
        null => "(default)",
        "" => "(none)",
        _ => value.ToString() ?? "",
    };
}

/// <summary>
/// Start-KvmNetwork and Stop-KvmNetwork: networks by name (wildcards, from the pipeline by property name), one
/// confirmation and one manager call each, the network after it with -PassThru.
/// </summary>
public abstract class KvmNetworkStateCmdletBase : KvmNetworkCmdletBase
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(KvmPS.PowerShell.Completers.NetworkNameCompleter))]
    [Alias("Network")]
    public string[] Name { get; set; } = [];

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>What -WhatIf and -Confirm say ("Start network").</summary>
    private protected abstract string Action { get; }

    /// <summary>The manager call for one network; returns the network after it.</summary>
    private protected abstract NetworkInfo Apply(string name);

    /// <summary>The kvmps net verb of the same call ("start").</summary>
    private protected abstract string CliVerb { get; }

    internal override void ProcessRemote(RemoteHost remote)
    {
        ForEachRemote(remote, SelectRemoteNetworks(remote, Name), n => n, Action, n => ["net", CliVerb, "--json", "--", n], RemoteObject.Network, PassThru.IsPresent);
    }

    protected override void ProcessLocal()
    {
        foreach (var name in SelectNetworks(Name))
            ForTarget(name, () =>
            {
                if (!Output.ShouldProcess(name, Action))
                    return;
                var info = Apply(name);
                if (PassThru.IsPresent)
                    Output.WriteObject(new KvmNetwork(info));
            });
    }
}
