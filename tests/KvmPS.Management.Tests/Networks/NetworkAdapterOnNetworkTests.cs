using System.Collections;
using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.Networks;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Networks;

/// <summary>A NIC that names a network: manifests and vm.json keep the name (key "network"); the VMM config gets the network's bridge.</summary>
public sealed class NetworkAdapterOnNetworkTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static VmDefinition Read(params Hashtable[] adapters) => VmDefinitionReader.FromDictionary(new Hashtable
    {
        ["Name"] = "web1",
        ["MemoryStartupBytes"] = 256L << 20,
        ["NetworkAdapters"] = adapters.Cast<object>().ToArray(),
    });

    [Fact]
    public void NetworkIsReadFromAManifestAndRoundTripsThroughJson()
    {
        var definition = Read(new Hashtable { ["Network"] = "lab" }, new Hashtable { ["Bridge"] = "br0" });

        Assert.Equal("lab", definition.NetworkAdapters[0].NetworkName);
        Assert.Null(definition.NetworkAdapters[0].BridgeName);
        Assert.Equal("br0", definition.NetworkAdapters[1].BridgeName);
        var json = VmDefinitionJson.Serialize(definition);
        Assert.Contains("\"network\": \"lab\"", json);
        Assert.Equal(definition, VmDefinitionJson.Deserialize(json));
        Assert.Equal($"{definition.NetworkAdapters[0].MacAddress} on network lab", definition.NetworkAdapters[0].ToString());
    }

    [Fact]
    public void OldDefinitionsWithoutNetworkStillRead()
    {
        const string json = """{"name":"old","memoryStartupBytes":268435456,"networkAdapters":[{"bridge":"br0","macAddress":"52:54:00:00:00:01"}]}""";
        var definition = VmDefinitionJson.Deserialize(json);
        Assert.Null(definition.NetworkAdapters[0].NetworkName);
        Assert.Equal("br0", definition.NetworkAdapters[0].BridgeName);
    }

    [Fact]
    public void TwoAttachmentsOnOneAdapterAreRefused()
    {
        var e = Assert.Throws<VmDefinitionException>(() => Read(new Hashtable { ["Network"] = "lab", ["Tap"] = "tap0" }));
        Assert.Equal("NetworkAdapters[0]", e.Property);
    }

    [Fact]
    public void VmmConfigurationGetsTheNetworksBridge()
    {
        var root = Path.Combine(_temp.Path, "store");
        var store = VmStore.Open(root, allowedPaths: AllowedPaths.StoreOnly(root));
        using (store.Lock())
            NetworkRegistry.Write(root, NetworkValidation.Normalize(new NetworkDefinition("lab", NetworkMode.Nat, "kvbr-lab", "10.231.5.0/24")));
        var definition = Read(new Hashtable { ["Network"] = "lab", ["MacAddress"] = "52:54:00:00:00:07" });

        var configuration = VmmConfigBuilder.BuildConfiguration(definition, "/s", "/l", null, n => NetworkRegistry.BridgeFor(root, n));

        var nic = Assert.Single(configuration.Devices!.OfType<NetDeviceSpec>());
        Assert.Equal("kvbr-lab", nic.Bridge);
        Assert.Equal(VmmConfigBuilder.GeneratedTapName("web1", 0), nic.Tap);
        Assert.Equal("52:54:00:00:00:07", nic.Mac);
        Assert.Throws<NetworkNotFoundException>(() => VmmConfigBuilder.BuildConfiguration(Read(new Hashtable { ["Network"] = "nothere" }), "/s", "/l", null, n => NetworkRegistry.BridgeFor(root, n)));
    }
}
