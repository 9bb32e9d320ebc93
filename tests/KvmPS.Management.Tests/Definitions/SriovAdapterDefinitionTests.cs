using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Definitions;

/// <summary>SR-IOV VF network adapters in a definition: manifests, vm.json, validation, the manager's add, and live rules.</summary>
public sealed class SriovAdapterDefinitionTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static VmDefinition Read(string adapters) =>
        DesiredStateReader.Parse($"@{{ Name = 'v'; MemoryStartupBytes = 64MB; NetworkAdapters = @( {adapters} ) }}", "m.psd1").Vms.Single().Definition!;

    private static DesiredStateException Refused(string adapters) =>
        Assert.Throws<DesiredStateException>(() => Read(adapters));

    [Fact]
    public void AManifestAdapterWithSriovVfAndVlanReadsWritesAndReadsBack()
    {
        var definition = Read("@{ SriovVf = '0000:04:00.1'; MacAddress = '52:54:00:ab:cd:01'; VlanId = 100 }, @{ Tap = 'tap0' }");

        var vf = definition.NetworkAdapters[0];
        Assert.Equal((PciAddress.Parse("0000:04:00.1"), 100, MacAddress.Parse("52:54:00:ab:cd:01")), (vf.SriovVf, vf.VlanId, vf.MacAddress));
        Assert.Null(vf.TapName);
        Assert.Equal("52:54:00:ab:cd:01 on SR-IOV VF 0000:04:00.1 (VLAN 100)", vf.ToString());

        var json = VmDefinitionJson.Serialize(definition);
        Assert.Contains("\"sriovVf\": \"0000:04:00.1\"", json, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(definition, VmDefinitionJson.Deserialize(json));
        // A plain adapter's vm.json has neither key (old readers and files stay as they were).
        Assert.DoesNotContain("vlanId", VmDefinitionJson.Serialize(definition with { NetworkAdapters = new([definition.NetworkAdapters[1]]) }), StringComparison.OrdinalIgnoreCase);

        var text = ManifestExporter.Write([(definition, VmState.Off)]);
        Assert.Contains("@{ SriovVf = '0000:04:00.1'; MacAddress = '52:54:00:ab:cd:01'; VlanId = 100 }", text);
        Assert.Equal(definition.NetworkAdapters, DesiredStateReader.Parse(text, "export.psd1").Vms.Single().Definition!.NetworkAdapters);
    }

    [Fact]
    public void AVfAdapterWithoutMacGetsTheGeneratedOneForItsPosition()
    {
        var definition = Read("@{ SriovVf = '0000:04:00.1' }");
        Assert.Equal(NetworkAdapterDefinition.GenerateMac("v", 0, []), definition.NetworkAdapters[0].MacAddress);
        Assert.Null(definition.NetworkAdapters[0].VlanId);
    }

    [Theory]
    [InlineData("@{ SriovVf = '0000:04:00.1'; Tap = 'tap0' }", "NetworkAdapters[0]", "exactly one of Tap, Bridge, Network or SriovVf")]
    [InlineData("@{ Tap = 'tap0'; VlanId = 10 }", "NetworkAdapters[0].VlanId", "SR-IOV adapter (SriovVf) only")]
    [InlineData("@{ SriovVf = '0000:04:00.1'; VlanId = 4095 }", "NetworkAdapters[0].VlanId", "from 1 to 4094 (got 4095)")]
    [InlineData("@{ SriovVf = '0000:04:00.1'; VlanId = 'ten' }", "NetworkAdapters[0].VlanId", "whole number")]
    [InlineData("@{ SriovVf = '04:00.1' }", "NetworkAdapters[0].SriovVf", "DDDD:BB:DD.F")]
    [InlineData("@{ SriovVf = '0000:04:00.1' }, @{ SriovVf = '0000:04:00.1' }", "NetworkAdapters[1].SriovVf", "already used by NetworkAdapters[0]")]
    public void BadVfAdaptersAreRefusedNamingTheKey(string adapters, string property, string reason)
    {
        var e = Refused(adapters);
        Assert.Equal(property, e.Property);
        Assert.Contains(reason, e.Reason);
        Assert.Equal("v", e.VmName);
    }

    [Fact]
    public void AVfCannotAlsoBeAPlainPassthroughDevice()
    {
        var e = Assert.Throws<VmDefinitionException>(() => (TestDefinitions.Minimal("p") with
        {
            PciPassthrough = new([PciAddress.Parse("0000:04:00.1")]),
            NetworkAdapters = new([new NetworkAdapterDefinition(null, null, MacAddress.Parse("52:54:00:00:00:01"), SriovVf: PciAddress.Parse("0000:04:00.1"))]),
        }).Validate());
        Assert.Equal("NetworkAdapters[0].SriovVf", e.Property);
        Assert.Contains("also in PciPassthrough", e.Message);
    }

    [Fact]
    public void TheManagerAddsAVfAdapterOnceAndItOnlyTakesEffectAtTheNextStart()
    {
        var store = VmStore.Open(Path.Combine(_dir.Path, "store"), allowedPaths: AllowedPaths.StoreOnly(Path.Combine(_dir.Path, "store")));
        var manager = new VmManager(store, new VmmProcessLauncher("/nonexistent/kvmps-vmm"));
        manager.New(TestDefinitions.Minimal("s"));
        var vf = PciAddress.Parse("0000:04:00.1");

        manager.AddNetworkAdapter("s", null, null, null, ChangeScope.Current, null, vf, 42);

        var adapter = Assert.Single(store.Get("s").NetworkAdapters);
        Assert.Equal((vf, 42), (adapter.SriovVf, adapter.VlanId));
        Assert.Throws<VmDeviceAlreadyAttachedException>(() => manager.AddNetworkAdapter("s", null, null, null, ChangeScope.Current, null, vf));
        Assert.Throws<ManagementValidationException>(() => manager.AddNetworkAdapter("s", "tap1", null, null, ChangeScope.Current, null, vf));

        // A running VM with hot-plug still needs a restart for it: a VF is passthrough, which does not hot-plug.
        var before = TestDefinitions.Minimal("s");
        var after = store.Get("s");
        var limits = new LiveLimits(MaxVcpus: 1, MemoryResize: false, BootMemoryBytes: before.Memory.StartupBytes) { DeviceHotplug = true };
        Assert.Equal(["NetworkAdapters"], LiveChangeRules.RestartNeeded(before, after, limits));
        var tapOnly = before with { NetworkAdapters = new([new NetworkAdapterDefinition("tap9", null, MacAddress.Parse("52:54:00:00:00:09"))]) };
        Assert.Empty(LiveChangeRules.RestartNeeded(before, tapOnly, limits));
    }
}
