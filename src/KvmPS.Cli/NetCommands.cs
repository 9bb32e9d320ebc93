using System.Globalization;
using System.Net;
using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.Networks;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps net list|show|create|set|start|stop|remove</c> and <c>kvmps vm addresses NAME</c>: virtual networks (the
/// twins of New/Get/Set/Remove/Start/Stop-KvmNetwork and Get-KvmVmNetworkAdapter; docs/networks.md). Exit codes: 0,
/// 2 usage, 4 refused or failed (a bad setting, a host command failed, in use, no such network), 5 no such VM, 6 store unusable.
/// </summary>
internal sealed class NetCommands(CliApp app)
{
    private static readonly string[] SettingOptions = ["--mode", "--bridge", "--subnet", "--gateway", "--dhcp-start", "--dhcp-end", "--leases", "--domain", "--mtu"];

    private NetworkManager Networks => new(app.Manager.Store);

    public int Net(ArgReader args)
    {
        var sub = args.Next();
        return sub switch
        {
            null => throw new UsageException("net: give a subcommand: list, show, create, set, start, stop, remove"),
            "-h" or "--help" => WriteHelp("net"),
            "list" or "ls" => app.WithHelp("net", () => List(args.Parse("--json"))),
            "show" or "info" => app.WithHelp("net", () => Show(args.Parse("--json"))),
            "create" => app.WithHelp("net", () => Create(args.Parse(["--autostart", "--start", "--json"], SettingOptions))),
            "set" => app.WithHelp("net", () => Set(args.Parse(["--autostart", "--no-autostart", "--json"], SettingOptions))),
            "start" => app.WithHelp("net", () => Start(args.Parse("--json"))),
            "stop" => app.WithHelp("net", () => Stop(args.Parse("--json"))),
            "remove" or "rm" => app.WithHelp("net", () => Remove(args.Parse("--json"))),
            _ => throw new UsageException($"net: unknown subcommand '{sub}'"),
        };
    }

    private int WriteHelp(string topic)
    {
        app.Out.Write(Help(topic));
        return ExitCodes.Ok;
    }

    private int List(ParsedArgs options)
    {
        options.Positionals("net", "net list [--json]", 0, 0);
        var networks = Networks.List();
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                foreach (var n in networks)
                    WriteNetwork(w, n);
                w.WriteEndArray();
            }));
            return ExitCodes.Ok;
        }
        CliOutput.Table(app.Out, ["NAME", "MODE", "STATE", "AUTOSTART", "BRIDGE", "SUBNET", "USED BY"], networks.Select(n => (IReadOnlyList<string>)
        [
            n.Name, n.Definition.Mode.ToString(), n.State.ToString(), n.Definition.Autostart ? "yes" : "no", n.Definition.BridgeName,
            n.Definition.Subnet ?? "-", n.UsedBy.Count == 0 ? "-" : string.Join(",", n.UsedBy),
        ]));
        return ExitCodes.Ok;
    }

    private int Show(ParsedArgs options)
    {
        var p = options.Positionals("net", "net show NAME [--json]", 1, 1);
        var n = Networks.Get(p[0]);
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w => WriteNetwork(w, n, Networks.Leases(n.Name))));
            return ExitCodes.Ok;
        }
        var d = n.Definition;
        app.Out.WriteLine($"Name:       {n.Name}");
        app.Out.WriteLine($"Mode:       {d.Mode}");
        app.Out.WriteLine($"State:      {n.State}");
        foreach (var problem in n.Problems)
            app.Out.WriteLine($"  problem:  {problem}");
        app.Out.WriteLine($"Bridge:     {d.BridgeName}");
        app.Out.WriteLine($"Autostart:  {(d.Autostart ? "yes" : "no")}");
        if (d.Mode != NetworkMode.Bridge)
        {
            app.Out.WriteLine($"Subnet:     {d.Subnet}");
            app.Out.WriteLine($"Gateway:    {d.Gateway}");
            app.Out.WriteLine($"DHCP range: {d.DhcpRangeStart} - {d.DhcpRangeEnd}");
            if (d.DnsDomain is not null)
                app.Out.WriteLine($"Domain:     {d.DnsDomain}");
            if (d.MtuBytes is not null)
                app.Out.WriteLine($"MTU:        {d.MtuBytes}");
            foreach (var lease in d.StaticLeases ?? [])
                app.Out.WriteLine($"Reserved:   {lease.MacAddress} -> {lease.Address}{(lease.HostName is null ? "" : " (" + lease.HostName + ")")}");
            app.Out.WriteLine($"dnsmasq:    {(n.DnsmasqProcessId is { } pid ? "pid " + pid.ToString(CultureInfo.InvariantCulture) : "not running")}");
            foreach (var lease in Networks.Leases(n.Name))
                app.Out.WriteLine($"Lease:      {lease.MacAddress} {lease.Address} {lease.HostName ?? "-"} {(lease.ExpiresUtc is { } e ? "until " + e.ToString("u", CultureInfo.InvariantCulture) : "infinite")}");
        }
        app.Out.WriteLine($"Used by:    {(n.UsedBy.Count == 0 ? "-" : string.Join(", ", n.UsedBy))}");
        return ExitCodes.Ok;
    }

    private int Create(ParsedArgs options)
    {
        var p = options.Positionals("net", "net create NAME --mode nat|isolated|bridge [--bridge BR] [--subnet CIDR] ... [--json]", 1, 1);
        var name = p[0];
        var modeText = options.Value("--mode") ?? throw new UsageException("net create: give --mode nat, isolated or bridge");
        var bridge = options.Value("--bridge") ?? DefaultBridge(name);
        var definition = Apply(new NetworkDefinition(name, ParseMode(modeText), bridge, Autostart: options.Has("--autostart")), options);
        var info = Networks.Create(definition);
        if (options.Has("--start"))
            info = Networks.Start(name);
        return Report(options, info, $"Network '{name}' created ({info.Definition.Mode}, bridge {info.Definition.BridgeName}{(info.Definition.Subnet is null ? "" : ", " + info.Definition.Subnet)}); state {info.State}.");
    }

    private int Set(ParsedArgs options)
    {
        var p = options.Positionals("net", "net set NAME [--mode M] [--bridge BR] [--subnet CIDR] ... [--autostart|--no-autostart] [--json]", 1, 1);
        if (options.Has("--autostart") && options.Has("--no-autostart"))
            throw new UsageException("net set: give --autostart or --no-autostart, not both");
        var current = Networks.Get(p[0]).Definition;
        var changed = current with { Autostart = options.Has("--autostart") || (!options.Has("--no-autostart") && current.Autostart) };
        if (options.Value("--mode") is { } mode)
            changed = changed with { Mode = ParseMode(mode) };
        if (options.Value("--bridge") is { } bridge)
            changed = changed with { BridgeName = bridge };
        if (options.Value("--subnet") is not null)
            // A new subnet: the old gateway and range do not fit it; their defaults follow it unless given too.
            changed = changed with { Gateway = null, DhcpRangeStart = null, DhcpRangeEnd = null };
        if (changed.Mode == NetworkMode.Bridge)
            changed = changed with { Subnet = null, Gateway = null, DhcpRangeStart = null, DhcpRangeEnd = null, DnsDomain = null, MtuBytes = null, StaticLeases = null };
        var info = Networks.Set(Apply(changed, options));
        return Report(options, info, $"Network '{info.Name}' changed; state {info.State}.");
    }

    private int Start(ParsedArgs options)
    {
        var p = options.Positionals("net", "net start NAME [--json]", 1, 1);
        var info = Networks.Start(p[0]);
        return Report(options, info, $"Network '{info.Name}' started; state {info.State}.");
    }

    private int Stop(ParsedArgs options)
    {
        var p = options.Positionals("net", "net stop NAME [--json]", 1, 1);
        var info = Networks.Stop(p[0]);
        return Report(options, info, $"Network '{info.Name}' stopped.");
    }

    private int Remove(ParsedArgs options)
    {
        var p = options.Positionals("net", "net remove NAME [--json]", 1, 1);
        var info = Networks.Get(p[0]);
        Networks.Remove(p[0]);
        return Report(options, info, $"Network '{info.Name}' removed.");
    }

    /// <summary><c>kvmps vm addresses NAME</c>: each adapter, where it is attached, and the addresses its MAC holds.</summary>
    public int VmAddresses(ParsedArgs options)
    {
        var p = options.Positionals("vm addresses", "vm addresses NAME [--json]", 1, 1);
        var adapters = Networks.Addresses(p[0]);
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                foreach (var a in adapters)
                {
                    w.WriteStartObject();
                    w.WriteString("vm", a.VmName);
                    w.WriteNumber("index", a.Index);
                    w.WriteString("macAddress", a.MacAddress.ToString());
                    CliOutput.WriteNullable(w, "network", a.Network);
                    CliOutput.WriteNullable(w, "bridge", a.BridgeName);
                    CliOutput.WriteNullable(w, "tap", a.TapName);
                    if (a.SriovVf is { } vf)
                        w.WriteString("sriovVf", vf.ToString());
                    if (a.VlanId is { } vlan)
                        w.WriteNumber("vlanId", vlan);
                    w.WriteStartArray("ipAddresses");
                    foreach (var ip in a.IPAddresses)
                        w.WriteStringValue(ip.ToString());
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }));
            return ExitCodes.Ok;
        }
        CliOutput.Table(app.Out, ["INDEX", "MAC", "NETWORK", "BRIDGE", "TAP", "ADDRESSES"], adapters.Select(a => (IReadOnlyList<string>)
        [
            a.Index.ToString(CultureInfo.InvariantCulture), a.MacAddress.ToString(),
            a.SriovVf is { } vf ? $"sriov-vf {vf}" + (a.VlanId is { } vlan ? $" vlan {vlan}" : "") : a.Network ?? "-", a.BridgeName ?? "-", a.TapName ?? "-",
            a.IPAddresses.Count == 0 ? "-" : string.Join(",", a.IPAddresses),
        ]));
        return ExitCodes.Ok;
    }

    // ---- helpers -------------------------------------------------------------------------------------

    private static string DefaultBridge(string name)
    {
        var bridge = "kv-" + name;
        if (bridge.Length > NetworkValidation.MaximumBridgeNameLength)
            throw new UsageException($"net create: the default bridge name '{bridge}' is longer than 15 characters; give --bridge");
        return bridge;
    }

    private static NetworkMode ParseMode(string text) =>
        Enum.TryParse<NetworkMode>(text, ignoreCase: true, out var mode) && Enum.IsDefined(mode) && !int.TryParse(text, out _)
            ? mode
            : throw new UsageException($"net: --mode '{text}' is not nat, isolated or bridge");

    /// <summary>The setting options given on the command line, over <paramref name="definition"/>.</summary>
    private static NetworkDefinition Apply(NetworkDefinition definition, ParsedArgs options)
    {
        if (options.Value("--subnet") is { } subnet)
            definition = definition with { Subnet = subnet };
        if (options.Value("--gateway") is { } gateway)
            definition = definition with { Gateway = Address("--gateway", gateway) };
        if (options.Value("--dhcp-start") is { } start)
            definition = definition with { DhcpRangeStart = Address("--dhcp-start", start) };
        if (options.Value("--dhcp-end") is { } end)
            definition = definition with { DhcpRangeEnd = Address("--dhcp-end", end) };
        if (options.Value("--domain") is { } domain)
            definition = definition with { DnsDomain = domain.Length == 0 ? null : domain };
        if (options.Value("--mtu") is { } mtu)
            definition = definition with
            {
                MtuBytes = mtu.Length == 0 ? null
                    : int.TryParse(mtu, NumberStyles.None, CultureInfo.InvariantCulture, out var bytes) ? bytes
                    : throw new UsageException($"net: --mtu '{mtu}' is not a number of bytes"),
            };
        if (options.Value("--leases") is { } leases)
            definition = definition with { StaticLeases = leases.Length == 0 ? [] : leases.Split(',').Select(Lease).ToList() };
        return definition;
    }

    /// <summary>MAC=IP or MAC=IP=HOSTNAME.</summary>
    private static DhcpStaticLease Lease(string text)
    {
        var parts = text.Split('=');
        if (parts.Length is < 2 or > 3)
            throw new UsageException($"net: --leases: '{text}' is not MAC=IP or MAC=IP=HOSTNAME");
        MacAddress mac;
        try
        {
            mac = MacAddress.Parse(parts[0]);
        }
        catch (ValueFormatException e)
        {
            throw new UsageException($"net: --leases: {e.Message}");
        }
        return new DhcpStaticLease(mac, Address("--leases", parts[1]), parts.Length == 3 ? parts[2] : null);
    }

    private static IPAddress Address(string option, string text) =>
        Ipv4Subnet.TryParseAddress(text, out var value) ? Ipv4Subnet.ToAddress(value) : throw new UsageException($"net: {option} '{text}' is not an IPv4 address");

    private int Report(ParsedArgs options, NetworkInfo info, string text)
    {
        if (options.Has("--json"))
            app.Out.WriteLine(CliOutput.Json(w => WriteNetwork(w, info)));
        else
        {
            app.Out.WriteLine(text);
            foreach (var problem in info.Problems)
                app.Out.WriteLine($"  problem: {problem}");
        }
        return ExitCodes.Ok;
    }

    internal static void WriteNetwork(Utf8JsonWriter w, NetworkInfo n, IReadOnlyList<NetworkLease>? leases = null)
    {
        var d = n.Definition;
        w.WriteStartObject();
        w.WriteString("name", n.Name);
        w.WriteString("mode", d.Mode.ToString());
        w.WriteString("state", n.State.ToString());
        w.WriteStartArray("problems");
        foreach (var problem in n.Problems)
            w.WriteStringValue(problem);
        w.WriteEndArray();
        w.WriteString("bridge", d.BridgeName);
        CliOutput.WriteNullable(w, "subnet", d.Subnet);
        CliOutput.WriteNullable(w, "gateway", d.Gateway?.ToString());
        CliOutput.WriteNullable(w, "dhcpRangeStart", d.DhcpRangeStart?.ToString());
        CliOutput.WriteNullable(w, "dhcpRangeEnd", d.DhcpRangeEnd?.ToString());
        CliOutput.WriteNullable(w, "dnsDomain", d.DnsDomain);
        if (d.MtuBytes is { } mtu)
            w.WriteNumber("mtuBytes", mtu);
        else
            w.WriteNull("mtuBytes");
        w.WriteBoolean("autostart", d.Autostart);
        w.WriteStartArray("staticLeases");
        foreach (var lease in d.StaticLeases ?? [])
        {
            w.WriteStartObject();
            w.WriteString("macAddress", lease.MacAddress.ToString());
            w.WriteString("address", lease.Address.ToString());
            CliOutput.WriteNullable(w, "hostName", lease.HostName);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        if (n.DnsmasqProcessId is { } pid)
            w.WriteNumber("dnsmasqPid", pid);
        else
            w.WriteNull("dnsmasqPid");
        w.WriteStartArray("usedBy");
        foreach (var vm in n.UsedBy)
            w.WriteStringValue(vm);
        w.WriteEndArray();
        if (leases is not null)
        {
            w.WriteStartArray("leases");
            foreach (var lease in leases)
            {
                w.WriteStartObject();
                w.WriteString("macAddress", lease.MacAddress.ToString());
                w.WriteString("address", lease.Address.ToString());
                CliOutput.WriteNullable(w, "hostName", lease.HostName);
                CliOutput.WriteNullable(w, "expiresUtc", lease.ExpiresUtc?.ToString("o", CultureInfo.InvariantCulture));
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        w.WriteEndObject();
    }

    public static string? Help(string topic) => topic switch
    {
        "net" or "net list" or "net show" or "net create" or "net set" or "net start" or "net stop" or "net remove" => """
            Usage: kvmps net list|show|create|set|start|stop|remove ...

              list [--json]
                  Every network: mode, state (Active, Inactive, Degraded), autostart, bridge, subnet, the VMs using it.
              show NAME [--json]
                  One network: its settings, what is wrong with it (drift), dnsmasq's pid and the DHCP leases.
              create NAME --mode nat|isolated|bridge [--bridge BR] [--subnet CIDR] [--gateway IP]
                     [--dhcp-start IP] [--dhcp-end IP] [--leases MAC=IP[=HOST],...] [--domain DOMAIN] [--mtu BYTES]
                     [--autostart] [--start] [--json]
                  Defines a network (it is not started without --start). nat: a bridge with the gateway address,
                  DHCP and DNS (dnsmasq), masquerade out of the host (nftables); isolated: the same with no route
                  out; bridge: VMs attach to the existing host bridge BR, no services. --bridge defaults to kv-NAME;
                  the gateway to the subnet's first address, the DHCP range to the rest. --autostart: 'kvmps
                  autostart' starts it before VMs.
              set NAME [the options of create] [--autostart|--no-autostart] [--json]
                  Changes the given settings; a started network is restarted with them (on failure the old ones
                  come back). An empty value clears --domain, --mtu or --leases.
              start NAME [--json]
                  Brings the network up; on a Degraded one it re-creates exactly what is missing (repair).
              stop NAME [--json]
                  Removes what start made (bridge, nftables table, dnsmasq); refused while running VMs use it.
              remove NAME [--json]
                  Stops and forgets the network; refused while VM definitions use it.

            VMs attach with 'kvmps vm attach-nic VM --network NAME'; 'kvmps vm addresses VM' shows their leases.
            Exit: 0, 2 bad option, 4 refused or failed (bad setting, host command failed, in use, no such network).

            """,
        "vm addresses" => """
            Usage: kvmps vm addresses NAME [--json]

            Each network adapter of the VM: MAC, network, bridge or tap, and the IPv4 addresses its MAC holds in the
            network's DHCP lease file (empty until the guest asked for a lease; none for tap or bridge adapters).
            Exit: 0, 5 no such VM.

            """,
        _ => null,
    };
}
