using System.Diagnostics;
using System.Net;
using KvmPS.Interop;
using KvmPS.Management.Definitions;
using KvmPS.Management.Networks;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Networks;

/// <summary>
/// Networks on a real kernel, each test in its own network namespace (<see cref="NetworkNamespace"/>): the manager's
/// host commands run under <c>ip netns exec</c>, so bridges, nftables tables, sysctl and dnsmasq never touch the host.
/// Category NetNamespace: needs root, iproute2, nftables, dnsmasq and busybox (CI runs them as root).
/// </summary>
[Trait("Category", NetworkNamespace.Category)]
public sealed class NetworkHostTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly NetworkNamespace _ns = new();
    private readonly string _bridge = "kvb" + Guid.NewGuid().ToString("N")[..8];
    private readonly VmStore _store;
    private readonly NetworkManager _manager;

    public NetworkHostTests()
    {
        var root = Path.Combine(_temp.Path, "store");
        _store = VmStore.Open(root, allowedPaths: AllowedPaths.StoreOnly(root));
        _manager = new NetworkManager(_store, _ns.Host);
    }

    public void Dispose()
    {
        _ns.Dispose();
        _temp.Dispose();
    }

    private NetworkDefinition Lab(NetworkMode mode = NetworkMode.Nat) => new("lab", mode, _bridge, "10.231.5.0/24", DnsDomain: "lab.test");

    private string Nft(params string[] args) => _ns.Exec(["nft", .. args]).StandardOutput;

    private bool BridgeExists() => _ns.Exec("ip", "link", "show", "dev", _bridge).Succeeded;

    [Fact]
    public void NatNetworkComesUpHandsOutALeaseAndStopRemovesEverything()
    {
        var created = _manager.Create(Lab());
        Assert.Equal(NetworkState.Inactive, created.State);
        Assert.False(BridgeExists()); // Create does not start it

        var info = _manager.Start("lab");

        Assert.Equal(NetworkState.Active, info.State);
        Assert.Empty(info.Problems);
        Assert.NotNull(info.DnsmasqProcessId);
        Assert.True(ProcessInterop.IsRunning(info.DnsmasqProcessId!.Value));
        Assert.Contains("inet 10.231.5.1/24", _ns.Exec("ip", "-4", "addr", "show", "dev", _bridge).StandardOutput);
        Assert.Equal("1", _ns.Exec("sysctl", "-n", "net.ipv4.ip_forward").StandardOutput.Trim());
        // nftables holds exactly our table, with exactly our rules.
        Assert.Equal("table ip kvmps-lab", Nft("list", "tables").Trim());
        var rules = Nft("list", "table", "ip", "kvmps-lab").Split('\n').Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith("table", StringComparison.Ordinal) && !l.StartsWith("chain", StringComparison.Ordinal) && !l.StartsWith("type", StringComparison.Ordinal) && l != "}")
            .ToList();
        Assert.Equal(
        [
            $"iifname \"{_bridge}\" oifname \"{_bridge}\" accept",
            $"iifname \"{_bridge}\" ip saddr 10.231.5.0/24 accept",
            $"oifname \"{_bridge}\" ip daddr 10.231.5.0/24 ct state established,related accept",
            $"iifname \"{_bridge}\" drop",
            $"oifname \"{_bridge}\" drop",
            "ip saddr 10.231.5.0/24 ip daddr 224.0.0.0/24 return",
            "ip saddr 10.231.5.0/24 ip daddr 255.255.255.255 return",
            $"ip saddr 10.231.5.0/24 ip daddr != 10.231.5.0/24 oifname != \"{_bridge}\" masquerade",
        ], rules);
        Assert.Equal(NetworkState.Active, _manager.Start("lab").State); // idempotent
        Assert.Equal(info.DnsmasqProcessId, _manager.Get("lab").DnsmasqProcessId);

        // A third-party DHCP client (busybox udhcpc) in a second namespace, wired to the bridge by a veth pair.
        var mac = MacAddress.Parse("52:54:00:5e:0a:01");
        using var client = new NetworkNamespace("kvc");
        var veth = "kvv" + Guid.NewGuid().ToString("N")[..8];
        NetworkNamespace.Run("ip", "-n", _ns.Name, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", client.Name);
        NetworkNamespace.Run("ip", "-n", _ns.Name, "link", "set", veth, "master", _bridge, "up");
        NetworkNamespace.Run("ip", "-n", client.Name, "link", "set", "eth0", "address", mac.ToString(), "up");
        var dhcp = client.Exec("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "1", "-s", "/bin/true", "-x", "hostname:guest1");
        Assert.True(dhcp.Succeeded, $"udhcpc: {dhcp.StandardOutput}{dhcp.StandardError}");
        Assert.Contains("lease of 10.231.5.", dhcp.StandardOutput + dhcp.StandardError);

        var lease = Assert.Single(_manager.Leases("lab"));
        Assert.Equal(mac, lease.MacAddress);
        Assert.Equal("guest1", lease.HostName);
        var address = Ipv4Subnet.ToUInt32(lease.Address);
        Assert.InRange(address, Ipv4Subnet.ToUInt32(IPAddress.Parse("10.231.5.2")), Ipv4Subnet.ToUInt32(IPAddress.Parse("10.231.5.254")));
        Assert.Contains(mac.ToString(), File.ReadAllText(NetworkRegistry.LeaseFilePath(_store.Root, "lab")));

        // A VM whose NIC has that MAC on the network sees the address; Remove refuses while it is defined.
        _store.Create(TestDefinitions.Minimal("web1") with { NetworkAdapters = new[] { new NetworkAdapterDefinition(null, null, mac, "lab") } });
        var nic = Assert.Single(_manager.Addresses("web1"));
        Assert.Equal("lab", nic.Network);
        Assert.Equal(_bridge, nic.BridgeName);
        Assert.Equal([lease.Address], nic.IPAddresses);
        Assert.Equal(["web1"], _manager.Get("lab").UsedBy);
        var inUse = Assert.Throws<NetworkInUseException>(() => _manager.Remove("lab"));
        Assert.Equal(["web1"], inUse.VmNames);
        Assert.Contains("'web1'", inUse.Message);
        Assert.True(BridgeExists()); // the refused Remove changed nothing

        var stopped = _manager.Stop("lab");

        Assert.Equal(NetworkState.Inactive, stopped.State);
        Assert.Empty(stopped.Problems);
        Assert.False(BridgeExists());
        Assert.Equal("", Nft("list", "tables").Trim());
        Assert.False(ProcessInterop.IsRunning(info.DnsmasqProcessId.Value));
        Assert.Equal(NetworkState.Inactive, _manager.Stop("lab").State); // idempotent
        // The veth the test enslaved is the test's own: Stop removed the bridge, not the other interfaces.
        Assert.True(_ns.Exec("ip", "link", "show", "dev", veth).Succeeded);
    }

    [Fact]
    public void DriftIsReportedPreciselyAndStartRepairsEach()
    {
        _manager.Create(Lab());
        var pid = _manager.Start("lab").DnsmasqProcessId!.Value;

        ProcessInterop.Kill(pid, 9);
        WaitUntil(() => !ProcessInterop.IsRunning(pid));
        AssertDegraded("dnsmasq is not running");
        var repaired = _manager.Start("lab");
        Assert.Equal(NetworkState.Active, repaired.State);
        Assert.NotEqual(pid, repaired.DnsmasqProcessId);

        _ns.Exec("nft", "flush", "table", "ip", "kvmps-lab");
        AssertDegraded("nftables table 'ip kvmps-lab' differs from the rules KvmPS installed");
        Assert.Equal(NetworkState.Active, _manager.Start("lab").State);
        Assert.Contains("masquerade", Nft("list", "table", "ip", "kvmps-lab"));

        _ns.Exec("nft", "delete", "table", "ip", "kvmps-lab");
        AssertDegraded("nftables table 'ip kvmps-lab' is missing");
        Assert.Equal(NetworkState.Active, _manager.Start("lab").State);

        _ns.Exec("ip", "addr", "flush", "dev", _bridge);
        AssertDegraded($"address 10.231.5.1/24 is missing on bridge '{_bridge}'");
        Assert.Equal(NetworkState.Active, _manager.Start("lab").State);

        _ns.Exec("ip", "link", "del", "dev", _bridge);
        AssertDegraded($"bridge '{_bridge}' is missing");
        var afterBridge = _manager.Start("lab");
        Assert.Equal(NetworkState.Active, afterBridge.State);
        Assert.Contains("inet 10.231.5.1/24", _ns.Exec("ip", "-4", "addr", "show", "dev", _bridge).StandardOutput);

        _ns.Exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=0");
        AssertDegraded("IPv4 forwarding (net.ipv4.ip_forward) is off");
        Assert.Equal(NetworkState.Active, _manager.Start("lab").State);
    }

    [Fact]
    public void IsolatedNetworkDropsForwardedTrafficAndHasNoMasquerade()
    {
        _manager.Create(Lab(NetworkMode.Isolated));
        Assert.Equal(NetworkState.Active, _manager.Start("lab").State);
        var table = Nft("list", "table", "ip", "kvmps-lab");
        Assert.DoesNotContain("masquerade", table);
        Assert.Contains($"iifname \"{_bridge}\" drop", table);
        Assert.Contains("dhcp-option=option:router\n", File.ReadAllText(Path.Combine(NetworkRegistry.StateDirectory(_store.Root, "lab"), "dnsmasq.conf")));
    }

    [Fact]
    public void DnsmasqFailingToStartLeavesNothingBehindAndNamesTheCommand()
    {
        _manager.Create(Lab());
        // Another process holds the DHCP server port in the namespace: dnsmasq cannot bind it.
        using var squatter = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", _ns.Name, "python3", "-c",
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',67))\nprint('bound',flush=True)\ntime.sleep(120)"])
        { RedirectStandardOutput = true })!;
        try
        {
            Assert.Equal("bound", squatter.StandardOutput.ReadLine());

            var e = Assert.Throws<NetworkHostException>(() => _manager.Start("lab"));

            Assert.StartsWith("dnsmasq --conf-file=", e.Command);
            Assert.Contains("dnsmasq", e.Message);
            Assert.False(string.IsNullOrWhiteSpace(e.StandardError));
            Assert.False(BridgeExists());
            Assert.Equal("", Nft("list", "tables").Trim());
            var info = _manager.Get("lab");
            Assert.Equal(NetworkState.Inactive, info.State);
            Assert.Null(info.DnsmasqProcessId);
        }
        finally
        {
            squatter.Kill();
            squatter.WaitForExit();
        }
    }

    [Fact]
    public void BridgeModeNeedsAnExistingBridgeAndLeavesItAlone()
    {
        _manager.Create(new NetworkDefinition("up", NetworkMode.Bridge, _bridge));
        var missing = Assert.Throws<NetworkSettingException>(() => _manager.Start("up"));
        Assert.Equal("BridgeName", missing.Property);
        Assert.Equal(_bridge, missing.Value);

        _ns.Exec("ip", "link", "add", "name", _bridge, "type", "bridge");
        Assert.Equal(NetworkState.Active, _manager.Start("up").State);
        Assert.Equal(NetworkState.Inactive, _manager.Stop("up").State);
        Assert.True(BridgeExists());
        Assert.Equal("", Nft("list", "tables").Trim());
    }

    [Fact]
    public void SetRestartsAStartedNetworkOnlyWhenHostSettingsChange()
    {
        _manager.Create(Lab());
        var pid = _manager.Start("lab").DnsmasqProcessId;

        var autostart = _manager.Set(_manager.Get("lab").Definition with { Autostart = true });
        Assert.True(autostart.Definition.Autostart);
        Assert.Equal(pid, autostart.DnsmasqProcessId); // nothing on the host changed

        var narrowed = _manager.Set(_manager.Get("lab").Definition with { DhcpRangeStart = IPAddress.Parse("10.231.5.100"), DhcpRangeEnd = IPAddress.Parse("10.231.5.120") });
        Assert.Equal(NetworkState.Active, narrowed.State);
        Assert.NotEqual(pid, narrowed.DnsmasqProcessId);
        Assert.Contains("dhcp-range=10.231.5.100,10.231.5.120,255.255.255.0,1h", File.ReadAllText(Path.Combine(NetworkRegistry.StateDirectory(_store.Root, "lab"), "dnsmasq.conf")));

        // A new subnet moves the bridge address and the rules with it.
        var moved = _manager.Set(_manager.Get("lab").Definition with { Subnet = "10.231.6.0/24", Gateway = null, DhcpRangeStart = null, DhcpRangeEnd = null });
        Assert.Equal(NetworkState.Active, moved.State);
        var addresses = _ns.Exec("ip", "-4", "addr", "show", "dev", _bridge).StandardOutput;
        Assert.Contains("inet 10.231.6.1/24", addresses);
        Assert.DoesNotContain("10.231.5.1", addresses);
        Assert.Contains("10.231.6.0/24", Nft("list", "table", "ip", "kvmps-lab"));
    }

    [Fact]
    public void StopIsRefusedWhileARunningVmUsesTheNetwork()
    {
        _manager.Create(Lab());
        _manager.Start("lab");
        var vms = new KvmPS.Management.Lifecycle.VmManager(_store);
        var definition = TestDefinitions.Minimal("web1") with { NetworkAdapters = new[] { new NetworkAdapterDefinition(null, null, MacAddress.Parse("52:54:00:5e:0a:02"), "lab") } };
        vms.New(definition);
        using (new FakeVmm(_store.SocketPath("web1")))
        {
            if (!vms.Get("web1").IsActive)
                File.WriteAllText(_store.PidPath("web1"), Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.True(vms.Get("web1").IsActive);

            var e = Assert.Throws<NetworkInUseException>(() => _manager.Stop("lab"));

            Assert.Equal(["web1"], e.VmNames);
            Assert.Contains("running VM 'web1'", e.Message);
            Assert.Equal(NetworkState.Active, _manager.Get("lab").State);
        }
    }

    /// <summary>
    /// The namespace plays the host, with an uplink to a third namespace playing the outside world (198.51.100.0/24, no
    /// route back to the network's subnet for Nat). A client on the bridge takes its lease and default route by hand (udhcpc
    /// runs with no script) and pings the outside: for Nat only masquerade makes the reply come back; for Isolated only our
    /// table's drop stops it.
    /// </summary>
    [Theory]
    [InlineData(NetworkMode.Nat, true)]
    [InlineData(NetworkMode.Isolated, false)]
    public void NatReachesTheOutsideAndIsolatedDoesNot_TwoClientsReachEachOther(NetworkMode mode, bool reachesOutside)
    {
        _manager.Create(Lab(mode));
        _manager.Start("lab");
        using var outside = new NetworkNamespace("kvo");
        var uplink = "kvu" + Guid.NewGuid().ToString("N")[..8];
        NetworkNamespace.Run("ip", "-n", _ns.Name, "link", "add", uplink, "type", "veth", "peer", "name", "eth0", "netns", outside.Name);
        NetworkNamespace.Run("ip", "-n", _ns.Name, "addr", "add", "198.51.100.1/24", "dev", uplink);
        NetworkNamespace.Run("ip", "-n", _ns.Name, "link", "set", uplink, "up");
        NetworkNamespace.Run("ip", "-n", outside.Name, "addr", "add", "198.51.100.2/24", "dev", "eth0");
        NetworkNamespace.Run("ip", "-n", outside.Name, "link", "set", "eth0", "up");
        if (mode == NetworkMode.Isolated)
        {
            // Give the packets every other way out (forwarding on, a route back), so only our table's drop stops them.
            _ns.Exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1");
            NetworkNamespace.Run("ip", "-n", outside.Name, "route", "add", "10.231.5.0/24", "via", "198.51.100.1");
        }

        using var a = new NetworkNamespace("kvc");
        using var b = new NetworkNamespace("kvc");
        var addressA = Connect(a, MacAddress.Parse("52:54:00:5e:0b:01"));
        var addressB = Connect(b, MacAddress.Parse("52:54:00:5e:0b:02"));

        Assert.True(a.Exec("ping", "-c", "1", "-W", "2", addressB).Succeeded, "two clients on one network reach each other");
        Assert.True(b.Exec("ping", "-c", "1", "-W", "2", addressA).Succeeded);
        Assert.Equal(reachesOutside, a.Exec("ping", "-c", "1", "-W", "2", "198.51.100.2").Succeeded);
        if (mode == NetworkMode.Isolated)
        {
            // The same ping passes once our table is gone: the table is what isolated it.
            _ns.Exec("nft", "delete", "table", "ip", "kvmps-lab");
            Assert.True(a.Exec("ping", "-c", "1", "-W", "2", "198.51.100.2").Succeeded);
        }
    }

    /// <summary>Wires <paramref name="client"/> to the bridge, gets a lease with udhcpc and configures it; returns the address.</summary>
    private string Connect(NetworkNamespace client, MacAddress mac)
    {
        var veth = "kvv" + Guid.NewGuid().ToString("N")[..8];
        NetworkNamespace.Run("ip", "-n", _ns.Name, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", client.Name);
        NetworkNamespace.Run("ip", "-n", _ns.Name, "link", "set", veth, "master", _bridge, "up");
        NetworkNamespace.Run("ip", "-n", client.Name, "link", "set", "eth0", "address", mac.ToString(), "up");
        var dhcp = client.Exec("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "1", "-s", "/bin/true");
        Assert.True(dhcp.Succeeded, $"udhcpc: {dhcp.StandardOutput}{dhcp.StandardError}");
        var lease = Assert.Single(_manager.Leases("lab"), l => l.MacAddress == mac);
        NetworkNamespace.Run("ip", "-n", client.Name, "addr", "add", lease.Address + "/24", "dev", "eth0");
        NetworkNamespace.Run("ip", "-n", client.Name, "route", "add", "default", "via", "10.231.5.1");
        return lease.Address.ToString();
    }

    private void AssertDegraded(string problem)
    {
        var info = _manager.Get("lab");
        Assert.Equal(NetworkState.Degraded, info.State);
        Assert.Equal([problem], info.Problems);
    }

    private static void WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!condition() && DateTime.UtcNow < deadline)
            Thread.Sleep(20);
        Assert.True(condition());
    }
}
