using System.Net;
using KvmPS.Management.Definitions;
using KvmPS.Management.Networks;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Networks;

/// <summary>Each bad setting is refused with <see cref="NetworkSettingException"/> naming the property and the value; nothing is stored.</summary>
public sealed class NetworkValidationTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static NetworkDefinition Nat(string subnet = "10.231.5.0/24") => new("lab", NetworkMode.Nat, "kvbr-lab", subnet);

    private static NetworkSettingException Refused(NetworkDefinition definition, string property, string value, string reasonPart)
    {
        var e = Assert.Throws<NetworkSettingException>(() => NetworkValidation.Normalize(definition));
        Assert.Equal(property, e.Property);
        Assert.Equal(value, e.Value);
        Assert.Contains(reasonPart, e.Reason);
        Assert.Contains(property, e.Message);
        Assert.Contains(value, e.Message);
        return e;
    }

    [Fact]
    public void DefaultsAreFilledIn()
    {
        var n = NetworkValidation.Normalize(Nat());
        Assert.Equal(IPAddress.Parse("10.231.5.1"), n.Gateway);
        Assert.Equal(IPAddress.Parse("10.231.5.2"), n.DhcpRangeStart);
        Assert.Equal(IPAddress.Parse("10.231.5.254"), n.DhcpRangeEnd);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-lab")]
    [InlineData("la b")]
    [InlineData("lab/1")]
    [InlineData("a23456789012345678901234567890123")]
    public void BadNamesAreRefused(string name) => Refused(Nat() with { Name = name }, "Name", name, "not a valid network name");

    [Theory]
    [InlineData("averyveryverylongbr", "longer than 15")]
    [InlineData("br/0", "not a valid interface name")]
    [InlineData("br 0", "not a valid interface name")]
    [InlineData("br:0", "not a valid interface name")]
    [InlineData("", "empty")]
    public void BadBridgeNamesAreRefused(string bridge, string reason) => Refused(Nat() with { BridgeName = bridge }, "BridgeName", bridge, reason);

    [Theory]
    [InlineData("10.231.5.0", "prefix length")]
    [InlineData("10.231.5.0/7", "prefix length")]
    [InlineData("10.0.0.0/31", "prefix length")]
    [InlineData("10.231.5.1/24", "host bits")]
    [InlineData("10.231.5/24", "CIDR")]
    [InlineData("fd00::/64", "CIDR")]
    [InlineData("10.231.5.0/33", "CIDR")]
    [InlineData("banana", "CIDR")]
    public void BadSubnetsAreRefused(string subnet, string reason) => Refused(Nat(subnet), "Subnet", subnet, reason);

    [Fact]
    public void SubnetIsRequiredForNatAndIsolated() => Refused(Nat() with { Subnet = null }, "Subnet", "", "required");

    [Theory]
    [InlineData("10.231.6.1", "outside the subnet")]
    [InlineData("10.231.5.0", "network address")]
    [InlineData("10.231.5.255", "broadcast address")]
    public void BadGatewaysAreRefused(string gateway, string reason) => Refused(Nat() with { Gateway = IPAddress.Parse(gateway) }, "Gateway", gateway, reason);

    [Fact]
    public void DhcpRangeOutsideTheSubnetIsRefused()
    {
        Refused(Nat() with { DhcpRangeStart = IPAddress.Parse("10.231.4.10") }, "DhcpRangeStart", "10.231.4.10", "outside the subnet");
        Refused(Nat() with { DhcpRangeEnd = IPAddress.Parse("10.231.6.10") }, "DhcpRangeEnd", "10.231.6.10", "outside the subnet");
    }

    [Fact]
    public void DhcpRangeContainingTheGatewayIsRefused() =>
        Refused(Nat() with { Gateway = IPAddress.Parse("10.231.5.100"), DhcpRangeStart = IPAddress.Parse("10.231.5.50"), DhcpRangeEnd = IPAddress.Parse("10.231.5.150") },
            "DhcpRangeStart", "10.231.5.50-10.231.5.150", "contains the gateway 10.231.5.100");

    [Fact]
    public void DhcpRangeBackwardsIsRefused() =>
        Refused(Nat() with { DhcpRangeStart = IPAddress.Parse("10.231.5.90"), DhcpRangeEnd = IPAddress.Parse("10.231.5.20") }, "DhcpRangeEnd", "10.231.5.20", "before DhcpRangeStart");

    [Fact]
    public void BadStaticLeasesAreRefused()
    {
        var mac = MacAddress.Parse("52:54:00:00:00:01");
        Refused(Nat() with { StaticLeases = [new DhcpStaticLease(mac, IPAddress.Parse("10.9.9.9"))] }, "StaticLeases[0].Address", "10.9.9.9", "outside the subnet");
        Refused(Nat() with { StaticLeases = [new DhcpStaticLease(mac, IPAddress.Parse("10.231.5.1"))] }, "StaticLeases[0].Address", "10.231.5.1", "gateway");
        Refused(Nat() with { StaticLeases = [new DhcpStaticLease(mac, IPAddress.Parse("10.231.5.10")), new DhcpStaticLease(mac, IPAddress.Parse("10.231.5.11"))] },
            "StaticLeases[1].MacAddress", "52:54:00:00:00:01", "already used by StaticLeases[0]");
        Refused(Nat() with { StaticLeases = [new DhcpStaticLease(mac, IPAddress.Parse("10.231.5.10")), new DhcpStaticLease(MacAddress.Parse("52:54:00:00:00:02"), IPAddress.Parse("10.231.5.10"))] },
            "StaticLeases[1].Address", "10.231.5.10", "already used by StaticLeases[0]");
        Refused(Nat() with { StaticLeases = [new DhcpStaticLease(MacAddress.Parse("01:00:5e:00:00:01"), IPAddress.Parse("10.231.5.10"))] }, "StaticLeases[0].MacAddress", "01:00:5e:00:00:01", "unicast");
    }

    [Fact]
    public void BadDomainAndMtuAreRefused()
    {
        Refused(Nat() with { DnsDomain = "lab..local" }, "DnsDomain", "lab..local", "not a valid DNS domain");
        Refused(Nat() with { MtuBytes = 60 }, "MtuBytes", "60", "between 68 and 65535");
    }

    [Fact]
    public void BridgeModeRefusesIpSettings() =>
        Refused(new NetworkDefinition("up", NetworkMode.Bridge, "br0", "10.0.0.0/24"), "Subnet", "10.0.0.0/24", "only to Nat and Isolated");

    [Fact, Trait("Category", NetworkNamespace.Category)]
    public void OverlappingSubnetOfAnotherNetworkIsRefusedAndNothingIsStored()
    {
        // Host checks (routes, links) run in a fresh namespace so the host's own routes do not matter.
        using var ns = new NetworkNamespace();
        var store = VmStore.Open(Path.Combine(_temp.Path, "store"), allowedPaths: AllowedPaths.StoreOnly(Path.Combine(_temp.Path, "store")));
        var manager = new NetworkManager(store, ns.Host);
        manager.Create(Nat("10.231.0.0/16"));
        var e = Assert.Throws<NetworkSettingException>(() => manager.Create(new NetworkDefinition("lab2", NetworkMode.Isolated, "kvbr-lab2", "10.231.5.0/24")));
        Assert.Equal("Subnet", e.Property);
        Assert.Contains("overlaps the subnet 10.231.0.0/16 of network 'lab'", e.Message);
        var bridge = Assert.Throws<NetworkSettingException>(() => manager.Create(new NetworkDefinition("lab3", NetworkMode.Isolated, "kvbr-lab", "10.232.5.0/24")));
        Assert.Equal("BridgeName", bridge.Property);
        Assert.Equal(["lab"], manager.List().Select(n => n.Name));
        Assert.Throws<NetworkAlreadyExistsException>(() => manager.Create(Nat("10.240.0.0/24")));
    }

    [Fact, Trait("Category", NetworkNamespace.Category)]
    public void SubnetCollidingWithAHostRouteIsRefused()
    {
        using var ns = new NetworkNamespace();
        NetworkNamespace.Run("ip", "-n", ns.Name, "link", "add", "kvtdummy0", "type", "veth", "peer", "name", "kvtdummy1");
        NetworkNamespace.Run("ip", "-n", ns.Name, "link", "set", "kvtdummy0", "up");
        NetworkNamespace.Run("ip", "-n", ns.Name, "route", "add", "10.77.0.0/16", "dev", "kvtdummy0");
        var store = VmStore.Open(Path.Combine(_temp.Path, "store"), allowedPaths: AllowedPaths.StoreOnly(Path.Combine(_temp.Path, "store")));
        var manager = new NetworkManager(store, ns.Host);
        var e = Assert.Throws<NetworkSettingException>(() => manager.Create(Nat("10.77.3.0/24")));
        Assert.Equal("Subnet", e.Property);
        Assert.Equal("10.77.3.0/24", e.Value);
        Assert.Contains("host route to 10.77.0.0/16 on kvtdummy0", e.Message);
        // A bridge name an interface KvmPS did not make already has.
        var taken = Assert.Throws<NetworkSettingException>(() => manager.Create(new NetworkDefinition("lab", NetworkMode.Nat, "kvtdummy0", "10.78.0.0/24")));
        Assert.Equal("BridgeName", taken.Property);
        Assert.Contains("in use by an interface KvmPS did not make", taken.Message);
        Assert.Empty(manager.List());
    }
}
