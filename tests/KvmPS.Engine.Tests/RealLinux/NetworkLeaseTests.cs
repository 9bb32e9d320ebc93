using System.Net;
using KvmPS.Engine.Tests.Devices;
using KvmPS.Engine.Tests.Support;
using KvmPS.Management.Definitions;
using KvmPS.Management.Networks;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.RealLinux;

/// <summary>
/// A VM's own NIC on a KvmPS NAT network takes a DHCP lease from the network's dnsmasq: Linux's virtio-net driver and
/// busybox's udhcpc (third-party client) in the guest, our virtio-net and tap in the VMM, the bridge, nftables table
/// and dnsmasq made by <see cref="NetworkManager"/> — all inside a test-made network namespace. The lease is then what
/// management reports as the VM's address (<c>kvmps vm addresses</c>, <c>Get-KvmVmNetworkAdapter</c>).
/// </summary>
[Trait("Category", "RealLinux")]
[Collection(RealLinuxCollection.Name)]
public class NetworkLeaseTests(ITestOutputHelper log)
{
    [Fact]
    public void AVmOnANatNetworkGetsItsAddressFromTheNetworksDhcpServer()
    {
        using var ns = new NetNs();
        using var dir = new TempDir();
        string root = dir.File("store");
        var store = VmStore.Open(root, allowedPaths: AllowedPaths.StoreOnly(root));
        var networks = new NetworkManager(store, new HostCommands(ns.Name));
        string bridge = "kvb" + Guid.NewGuid().ToString("N")[..8];
        networks.Create(new NetworkDefinition("lab", NetworkMode.Nat, bridge, "10.97.3.0/24", DnsDomain: "lab.test"));
        var started = networks.Start("lab");
        Assert.Empty(started.Problems);

        // The NIC as management configures it for a VM whose adapter says Network = 'lab'.
        var mac = MacAddress.Parse("52:54:00:00:97:03");
        var definition = new VmDefinition
        {
            Name = "web1",
            Memory = MemorySettings.Fixed(256L << 20),
            NetworkAdapters = new[] { new NetworkAdapterDefinition(null, null, mac, "lab") },
        };
        var nic = VmmConfigBuilder.NetworkAdapterDevice(definition, 0, resolveNetworkBridge: n => NetworkRegistry.BridgeFor(store.Root, n));
        Assert.Equal(bridge, nic.Bridge);
        Assert.Equal(mac.ToString(), nic.Mac);

        using var guest = new LinuxGuest(dir, 1, "256M", ns.Name, "--device", $"net,tap={nic.Tap},bridge={nic.Bridge},mac={nic.Mac}");
        log.WriteLine($"boot to the agent: {guest.BootTime.TotalSeconds:F1} s");
        var dhcp = guest.Run("dhcp eth0", TimeSpan.FromMinutes(3));
        log.WriteLine(string.Join('\n', dhcp));
        var lease = LinuxGuest.Fields(dhcp, "dhcp");
        var address = IPAddress.Parse(lease["ip"]);
        Assert.Equal("10.97.3.1", lease["router"]);
        Assert.Equal("255.255.255.0", lease["subnet"]);
        Assert.Equal("lab.test", lease["domain"]);

        // dnsmasq recorded the lease for the VM's MAC, with the host name the guest sent.
        var recorded = Assert.Single(networks.Leases("lab"));
        Assert.Equal(mac, recorded.MacAddress);
        Assert.Equal(address, recorded.Address);
        Assert.Equal("kvmps-guest", recorded.HostName);
        Assert.InRange(Ipv4Subnet.ToUInt32(address), Ipv4Subnet.ToUInt32(IPAddress.Parse("10.97.3.2")), Ipv4Subnet.ToUInt32(IPAddress.Parse("10.97.3.254")));

        // Management shows it as the VM's address.
        store.Create(definition);
        var shown = Assert.Single(networks.Addresses("web1"));
        Assert.Equal("lab", shown.Network);
        Assert.Equal([address], shown.IPAddresses);

        // The guest reaches the gateway with the address it was given.
        var ping = guest.Run($"net eth0 {address} 10.97.3.1", TimeSpan.FromMinutes(2));
        Assert.Contains(ping, l => l.Contains("1 packets received"));
        networks.Stop("lab");
    }
}
