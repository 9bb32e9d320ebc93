using System.Text;
using KvmPS.Interop;
using KvmPS.Management.Store;

namespace KvmPS.Management.Networks;

/// <summary>The host side of a network: what <see cref="NetworkManager.Start"/> makes, Stop removes and Get inspects.</summary>
public sealed partial class NetworkManager
{
    private const string StartedMarker = "started";

    private string StateDirectory(string name) => NetworkRegistry.StateDirectory(Store.Root, name);
    private string StatePath(string name, string file) => Path.Combine(StateDirectory(name), file);

    // ---- checks against the host and the other networks ----------------------------------------------

    /// <summary>
    /// Refuses a subnet overlapping another KvmPS network's or a host route (other than the network's own bridge route),
    /// a bridge another KvmPS network names, and (Nat, Isolated) a bridge name an interface KvmPS did not make has.
    /// </summary>
    private void CheckAgainstHost(NetworkDefinition network, NetworkDefinition? previous)
    {
        var others = NetworkRegistry.List(Store.Root).Where(n => n.Name != network.Name).ToList();
        foreach (var other in others)
            if (other.BridgeName == network.BridgeName)
                throw new NetworkSettingException(network.Name, "BridgeName", network.BridgeName, $"is already the bridge of network '{other.Name}'");
        if (network.Mode == NetworkMode.Bridge)
            return;
        var subnet = NetworkValidation.ParseSubnet(network.Name, network.Subnet!);
        foreach (var other in others.Where(o => o.Subnet is not null))
            if (subnet.Overlaps(NetworkValidation.ParseSubnet(other.Name, other.Subnet!)))
                throw new NetworkSettingException(network.Name, "Subnet", network.Subnet!, $"overlaps the subnet {other.Subnet} of network '{other.Name}'");
        // Routes through our own bridge are the ones a started network made itself.
        var ownBridges = new HashSet<string>(StringComparer.Ordinal) { network.BridgeName };
        if (previous is not null)
            ownBridges.Add(previous.BridgeName);
        foreach (var route in HostNetworkState.Routes(_host))
        {
            if (route.Device is not null && ownBridges.Contains(route.Device) && IsOurs(route.Device, network.Name))
                continue;
            if (route.Destination == "default" || Ipv4Subnet.TryParse(route.Destination, out _, requireNetworkAddress: false) is not { } routed)
                continue;
            if (subnet.Overlaps(routed))
                throw new NetworkSettingException(network.Name, "Subnet", network.Subnet!,
                    $"collides with the host route to {route.Destination}{(route.Device is null ? "" : " on " + route.Device)} (ip route shows it); choose a free subnet");
        }
        if (HostNetworkState.Link(_host, network.BridgeName) is { } link && link.Alias != HostNetworkState.OwnerAlias(network.Name))
            throw new NetworkSettingException(network.Name, "BridgeName", network.BridgeName,
                $"is in use by an interface KvmPS did not make ({link.Kind ?? "device"}{(link.Alias is null ? "" : ", alias '" + link.Alias + "'")}); choose another name, or use Mode Bridge to attach to it");
    }

    private bool IsOurs(string device, string network) => HostNetworkState.Link(_host, device)?.Alias == HostNetworkState.OwnerAlias(network);

    // ---- start --------------------------------------------------------------------------------------

    /// <summary>
    /// Makes whatever is missing; on failure removes what this call made (a bridge, a table, a dnsmasq it started) so
    /// nothing half-made stays, and throws naming the failing command.
    /// </summary>
    private void StartHost(NetworkDefinition network)
    {
        StoreConfinement.CreateDirectory(StateDirectory(network.Name));
        if (network.Mode == NetworkMode.Bridge)
        {
            if (HostNetworkState.Link(_host, network.BridgeName) is not { } existing)
                throw new NetworkSettingException(network.Name, "BridgeName", network.BridgeName, "does not exist on this host (a Bridge network attaches to a bridge the admin made)");
            if (existing.Kind != "bridge")
                throw new NetworkSettingException(network.Name, "BridgeName", network.BridgeName, $"is a {existing.Kind ?? "plain"} interface, not a bridge");
            WriteMarker(network.Name);
            return;
        }
        bool madeBridge = false, madeTable = false, startedDnsmasq = false;
        var name = network.Name;
        try
        {
            var link = HostNetworkState.Link(_host, network.BridgeName);
            if (link is null)
            {
                _host.Check(name, "ip", "link", "add", "name", network.BridgeName, "type", "bridge");
                madeBridge = true;
                _host.Check(name, "ip", "link", "set", "dev", network.BridgeName, "alias", HostNetworkState.OwnerAlias(name));
            }
            if (network.MtuBytes is { } mtu && link?.Mtu != mtu)
                _host.Check(name, "ip", "link", "set", "dev", network.BridgeName, "mtu", mtu.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var address = GatewayCidr(network);
            if (!HostNetworkState.Addresses(_host, network.BridgeName).Contains(address))
                _host.Check(name, "ip", "addr", "add", address, "dev", network.BridgeName);
            if (link is not { Up: true })
                _host.Check(name, "ip", "link", "set", "dev", network.BridgeName, "up");
            if (network.Mode == NetworkMode.Nat && _host.Run("sysctl", "-n", "net.ipv4.ip_forward").StandardOutput.Trim() != "1")
                _host.Check(name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1");

            if (TableProblem(network) is not null)
            {
                madeTable = ListTable(name) is null;
                var script = StatePath(name, "nftables.nft");
                DurableFile.WriteAtomically(script, Encoding.UTF8.GetBytes(NetworkHostConfig.NftScript(network)));
                _host.Check(name, "nft", "-f", script);
                DurableFile.WriteAtomically(StatePath(name, "nftables.applied"), Encoding.UTF8.GetBytes(ListTable(name) ?? ""));
            }

            // A re-made bridge is a new interface: a dnsmasq bound to the old one serves nothing, so it is restarted.
            if (madeBridge || DnsmasqProblem(network) is not null)
            {
                StopDnsmasq(name);
                DurableFile.WriteAtomically(StatePath(name, "dnsmasq.conf"), Encoding.UTF8.GetBytes(NetworkHostConfig.DnsmasqConfig(network, StateDirectory(name))));
                // dnsmasq forks itself into the background once its sockets are bound, so a bad config or a taken
                // port is reported here, synchronously; the daemon outlives kvmps (it is reparented to PID 1).
                startedDnsmasq = true;
                _host.Check(name, "dnsmasq", "--conf-file=" + StatePath(name, "dnsmasq.conf"));
                if (DnsmasqPid(name) is null)
                    throw new NetworkHostException(name, "dnsmasq --conf-file=" + StatePath(name, "dnsmasq.conf"), "it exited after starting; see " + StatePath(name, "dnsmasq.log"));
            }
            WriteMarker(name);
        }
        catch
        {
            if (startedDnsmasq)
                StopDnsmasq(name);
            if (madeTable)
                DeleteTable(name);
            if (madeBridge)
                _host.Run("ip", "link", "del", "dev", network.BridgeName);
            throw;
        }
    }

    // ---- stop ---------------------------------------------------------------------------------------

    /// <summary>Stops dnsmasq, deletes our table and our bridge (only one carrying our alias) and the marker; the lease file stays.</summary>
    private void StopHost(NetworkDefinition network)
    {
        var name = network.Name;
        if (network.Mode != NetworkMode.Bridge)
        {
            StopDnsmasq(name);
            if (ListTable(name) is not null)
                _host.Check(name, "nft", "delete", "table", "ip", NetworkHostConfig.TableName(name));
            if (IsOurs(network.BridgeName, name))
                _host.Check(name, "ip", "link", "del", "dev", network.BridgeName);
        }
        DeleteMarker(name);
    }

    private void StopDnsmasq(string name)
    {
        if (DnsmasqPid(name) is { } pid)
        {
            ProcessInterop.Kill(pid, 15);
            // PID 1 here may not reap: a zombie counts as gone (ProcessInterop.IsRunning).
            for (var i = 0; i < 50 && ProcessInterop.IsRunning(pid); i++)
                Thread.Sleep(20);
            if (ProcessInterop.IsRunning(pid))
                ProcessInterop.Kill(pid, 9);
        }
        TryDelete(StatePath(name, "dnsmasq.pid"));
    }

    private void DeleteTable(string name) => _host.Run("nft", "delete", "table", "ip", NetworkHostConfig.TableName(name));

    // ---- inspection ---------------------------------------------------------------------------------

    private NetworkInfo ToInfo(NetworkDefinition network)
    {
        var problems = new List<string>();
        var started = IsStarted(network);
        int? pid = null;
        bool anyPiece;
        if (network.Mode == NetworkMode.Bridge)
        {
            var link = HostNetworkState.Link(_host, network.BridgeName);
            anyPiece = false;
            if (link is null)
                problems.Add($"bridge '{network.BridgeName}' does not exist");
            else if (link.Kind != "bridge")
                problems.Add($"'{network.BridgeName}' is not a bridge");
        }
        else
        {
            var link = HostNetworkState.Link(_host, network.BridgeName);
            pid = DnsmasqPid(network.Name);
            var table = ListTable(network.Name);
            anyPiece = (link is not null && link.Alias == HostNetworkState.OwnerAlias(network.Name)) || pid is not null || table is not null;
            if (link is null)
                problems.Add($"bridge '{network.BridgeName}' is missing");
            else if (link.Alias != HostNetworkState.OwnerAlias(network.Name))
                problems.Add($"'{network.BridgeName}' exists but was not made by KvmPS for this network");
            else
            {
                if (!link.Up)
                    problems.Add($"bridge '{network.BridgeName}' is down");
                if (!HostNetworkState.Addresses(_host, network.BridgeName).Contains(GatewayCidr(network)))
                    problems.Add($"address {GatewayCidr(network)} is missing on bridge '{network.BridgeName}'");
                if (network.MtuBytes is { } mtu && link.Mtu != mtu)
                    problems.Add($"bridge '{network.BridgeName}' has MTU {link.Mtu}, not {mtu}");
            }
            if (TableProblem(network, table) is { } tableProblem)
                problems.Add(tableProblem);
            if (DnsmasqProblem(network, pid) is { } dnsmasqProblem)
                problems.Add(dnsmasqProblem);
            if (network.Mode == NetworkMode.Nat && _host.Run("sysctl", "-n", "net.ipv4.ip_forward").StandardOutput.Trim() != "1")
                problems.Add("IPv4 forwarding (net.ipv4.ip_forward) is off");
        }
        var state = started
            ? problems.Count == 0 ? NetworkState.Active : NetworkState.Degraded
            : anyPiece ? NetworkState.Degraded : NetworkState.Inactive;
        if (!started && state == NetworkState.Inactive)
            problems.Clear();
        else if (!started)
            problems.Insert(0, "the network is not started but some of its pieces exist (kvmps net stop removes them)");
        return new NetworkInfo(network, state, problems, pid, VmsUsingNetwork(network.Name));
    }

    private string? TableProblem(NetworkDefinition network, string? listing = null)
    {
        var table = "nftables table 'ip " + NetworkHostConfig.TableName(network.Name) + "'";
        listing ??= ListTable(network.Name);
        if (listing is null)
            return table + " is missing";
        var script = ReadText(StatePath(network.Name, "nftables.nft"));
        var applied = ReadText(StatePath(network.Name, "nftables.applied"));
        // What nft listed right after our atomic install is the reference: nft's own rendering, compared as it renders.
        if (script != NetworkHostConfig.NftScript(network) || applied != listing)
            return table + " differs from the rules KvmPS installed";
        return null;
    }

    private string? DnsmasqProblem(NetworkDefinition network, int? pid = null)
    {
        pid ??= DnsmasqPid(network.Name);
        if (pid is null)
            return "dnsmasq is not running";
        if (ReadText(StatePath(network.Name, "dnsmasq.conf")) != NetworkHostConfig.DnsmasqConfig(network, StateDirectory(network.Name)))
            return $"dnsmasq (pid {pid}) runs with a configuration that differs from the network's settings";
        return null;
    }

    /// <summary>The pid in dnsmasq's pid file if that process runs (not a zombie) and is our dnsmasq (its command line names our config).</summary>
    private int? DnsmasqPid(string name)
    {
        var text = ReadText(StatePath(name, "dnsmasq.pid"));
        if (text is null || !int.TryParse(text.Trim(), out var pid) || !ProcessInterop.IsRunning(pid))
            return null;
        try
        {
            var cmdline = File.ReadAllText($"/proc/{pid}/cmdline");
            return cmdline.Contains(StatePath(name, "dnsmasq.conf"), StringComparison.Ordinal) ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private string? ListTable(string name)
    {
        var result = _host.Run("nft", "list", "table", "ip", NetworkHostConfig.TableName(name));
        return result.Succeeded ? result.StandardOutput : null;
    }

    private static string GatewayCidr(NetworkDefinition network) =>
        $"{network.Gateway}/{NetworkValidation.ParseSubnet(network.Name, network.Subnet!).PrefixLength}";

    // ---- the started marker -------------------------------------------------------------------------

    /// <summary>
    /// Started = the marker exists and was written in this boot (it holds the kernel's boot id): after a host reboot a
    /// network is Inactive, not Degraded, until autostart or the admin starts it.
    /// </summary>
    private bool IsStarted(NetworkDefinition network) =>
        ReadText(StatePath(network.Name, StartedMarker)) is { } id && id.Trim() == BootId();

    private void WriteMarker(string name) =>
        DurableFile.WriteAtomically(StatePath(name, StartedMarker), Encoding.UTF8.GetBytes(BootId() + "\n"));

    private void DeleteMarker(string name) => TryDelete(StatePath(name, StartedMarker));

    private static string BootId() => ReadText("/proc/sys/kernel/random/boot_id")?.Trim() ?? "unknown";

    private static string? ReadText(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}
