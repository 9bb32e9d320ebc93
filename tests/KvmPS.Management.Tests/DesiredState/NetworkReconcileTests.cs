using System.Net;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Networks;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.DesiredState;

/// <summary>
/// Networks in the plan, drift, repair and export, against <see cref="FakeNetworks"/> (no bridges, dnsmasq or
/// nftables: those are the network manager's, tested in namespaces by its own tests). VMs are only defined, never run.
/// </summary>
public sealed class NetworkReconcileTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly FakeNetworks _networks = new();

    public void Dispose() => _temp.Dispose();

    private Reconciler Open()
    {
        var root = Path.Combine(_temp.Path, "store");
        return new Reconciler(new VmManager(VmStore.Open(root, allowedPaths: AllowedPaths.StoreOnly(root)), diskImageCreator: new StorageDiskImageCreator()), _networks);
    }

    private const string Lab = """
        @{
          Networks = @(
            @{ Name = 'lab'; Mode = 'Nat'; Bridge = 'kvbr-lab'; Subnet = '10.77.0.0/24'; DhcpRange = @('10.77.0.100', '10.77.0.200'); Autostart = $true }
          )
          VirtualMachines = @(
            @{ Name = 'web1'; MemoryStartupBytes = 64MB }
          )
        }
        """;

    private static DesiredHostState Parse(string text) => DesiredStateReader.Parse(text, "m.psd1");

    /// <summary>The VM with an adapter on <paramref name="network"/> (built here: the definitions reader's Network key is net-core's).</summary>
    private static DesiredHostState OnNetwork(DesiredHostState desired, string vm, string network) => desired with
    {
        Vms = desired.Vms.Select(v => v.Name != vm ? v : v with
        {
            Definition = v.Definition! with { NetworkAdapters = new ValueList<NetworkAdapterDefinition>([new(null, null, MacAddress.Parse("52:54:00:aa:00:01"), network)]) },
        }).ToList(),
    };

    private static NetworkDefinition LabDefinition(string subnet = "10.77.0.0/24") =>
        new("lab", NetworkMode.Nat, "kvbr-lab", subnet, DhcpRangeStart: IPAddress.Parse("10.77.0.100"), DhcpRangeEnd: IPAddress.Parse("10.77.0.200"), Autostart: true);

    private static string Steps(ReconcilePlan plan) => string.Join(" ", plan.Actions.Select(a => $"{a.Kind}:{a.VmName}"));

    [Fact]
    public void From_empty_the_network_is_created_and_started_before_the_VMs_and_a_second_apply_does_nothing()
    {
        var desired = Parse(Lab);
        var reconciler = Open();

        var plan = reconciler.Plan(desired);
        Assert.Equal("CreateNetwork:lab StartNetwork:lab Create:web1", Steps(plan));
        Assert.Contains(new Drift("Networks.lab", "Ensure", "Present", "Absent"), plan.Drifts);

        var result = reconciler.Set(desired);
        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Equal(["Create:lab", "Start:lab"], _networks.Calls);
        var created = _networks["lab"].Definition;
        Assert.Equal(("kvbr-lab", "10.77.0.0/24", "10.77.0.100", true), (created.BridgeName, created.Subnet, created.DhcpRangeStart?.ToString(), created.Autostart));
        Assert.Equal(NetworkState.Active, _networks["lab"].State);

        var again = Open();
        Assert.True(again.Plan(desired).IsEmpty);
        var status = again.Get(desired);
        Assert.True(status.InDesiredState);
        Assert.Equal(NetworkState.Active, Assert.Single(status.Networks).Actual!.State);
    }

    [Fact]
    public void A_VM_on_a_declared_network_is_created_after_the_network_is_started()
    {
        var desired = OnNetwork(Parse(Lab), "web1", "lab");

        var plan = Open().Plan(desired);

        Assert.Equal("CreateNetwork:lab StartNetwork:lab Create:web1", Steps(plan));
        Assert.Equal("lab", plan.Actions[2].Definition!.NetworkAdapters[0].NetworkName);
    }

    [Fact]
    public void A_VM_on_a_network_that_neither_exists_nor_is_declared_is_refused_in_the_plan()
    {
        var desired = OnNetwork(Parse("@{ VirtualMachines = @( @{ Name = 'web1'; MemoryStartupBytes = 64MB } ) }"), "web1", "nope");

        var error = Assert.Throws<DesiredStateException>(() => Open().Plan(desired));
        Assert.Equal(("web1", "NetworkAdapters[0].Network"), (error.VmName, error.Property));
        Assert.Contains("network 'nope' does not exist", error.Message);

        // The same VM on a network that exists (made outside the manifest) plans fine, with no network step.
        _networks.Add(LabDefinition() with { Name = "nope", BridgeName = "kvbr-nope" });
        Assert.Equal("Create:web1", Steps(Open().Plan(desired)));
    }

    [Fact]
    public void A_VM_on_a_network_the_manifest_removes_is_refused_in_the_plan()
    {
        var desired = OnNetwork(Parse("""
            @{
              Networks = @( @{ Name = 'lab'; Ensure = 'Absent' } )
              VirtualMachines = @( @{ Name = 'web1'; MemoryStartupBytes = 64MB } )
            }
            """), "web1", "lab");

        var error = Assert.Throws<DesiredStateException>(() => Open().Plan(desired));
        Assert.Contains("Ensure = 'Absent'", error.Message);
    }

    [Fact]
    public void Changed_settings_are_drift_and_are_applied_with_Set_keeping_what_the_manifest_does_not_state()
    {
        _networks.Add(LabDefinition() with { Autostart = false, DnsDomain = "kept.test", MtuBytes = 1400 });
        var desired = Parse(Lab);

        var reconciler = Open();
        var drifts = reconciler.Test(desired).Where(d => d.VmName.StartsWith("Networks.", StringComparison.Ordinal)).ToList();
        Assert.Equal([new Drift("Networks.lab", "Autostart", "True", "False")], drifts);

        var result = reconciler.Set(desired);
        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Contains("Set:lab", _networks.Calls);
        var now = _networks["lab"].Definition;
        Assert.Equal((true, "kept.test", 1400), (now.Autostart, now.DnsDomain, now.MtuBytes));
        Assert.DoesNotContain(Open().Test(desired), d => d.VmName == "Networks.lab");
    }

    [Fact]
    public void A_new_subnet_resets_the_unstated_gateway_to_the_default_of_the_new_one()
    {
        var current = LabDefinition("10.1.0.0/24") with { Gateway = IPAddress.Parse("10.1.0.1"), DhcpRangeStart = null, DhcpRangeEnd = null };
        var desired = Assert.Single(Parse("@{ Networks = @( @{ Name = 'lab'; Bridge = 'kvbr-lab'; Subnet = '10.2.0.0/24' } ) }").Networks);

        var target = NetworkPlanner.TargetDefinition(desired, current);

        Assert.Equal("10.2.0.0/24", target.Subnet);
        Assert.Null(target.Gateway);
        Assert.Contains(new Drift("Networks.lab", "Subnet", "10.2.0.0/24", "10.1.0.0/24"), NetworkPlanner.Differences("Networks.lab", current, target));
    }

    [Fact]
    public void The_order_of_static_leases_is_not_drift()
    {
        var a = new DhcpStaticLease(MacAddress.Parse("52:54:00:00:00:01"), IPAddress.Parse("10.77.0.11"));
        var b = new DhcpStaticLease(MacAddress.Parse("52:54:00:00:00:02"), IPAddress.Parse("10.77.0.12"));

        Assert.Empty(NetworkPlanner.Differences("Networks.lab", LabDefinition() with { StaticLeases = [a, b] }, LabDefinition() with { StaticLeases = [b, a] }));
        Assert.Single(NetworkPlanner.Differences("Networks.lab", LabDefinition() with { StaticLeases = [a] }, LabDefinition() with { StaticLeases = [a, b] }));
    }

    [Fact]
    public void A_degraded_network_is_drift_with_its_problems_and_is_repaired_by_Start_before_the_VMs()
    {
        _networks.Add(LabDefinition(), NetworkState.Degraded, ["dnsmasq is not running", "nftables table kvmps-lab is missing"]);
        var desired = Parse(Lab);

        var plan = Open().Plan(desired);
        Assert.Contains(new Drift("Networks.lab", "State", "Active", "Degraded (dnsmasq is not running; nftables table kvmps-lab is missing)"), plan.Drifts);
        Assert.Equal("StartNetwork:lab Create:web1", Steps(plan));
        Assert.Equal("Repair network", plan.Actions[0].Verb());

        var result = Open().Set(desired);
        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Equal(["Start:lab"], _networks.Calls);
        Assert.Empty(Open().Test(desired));
    }

    [Fact]
    public void An_inactive_network_is_drift_and_is_started()
    {
        _networks.Add(LabDefinition(), NetworkState.Inactive);

        var plan = Open().Plan(Parse(Lab));

        Assert.Contains(new Drift("Networks.lab", "State", "Active", "Inactive"), plan.Drifts);
        Assert.Equal("Start network", plan.Actions[0].Verb());
    }

    [Fact]
    public void A_network_that_stays_degraded_after_Start_fails_the_step_and_no_VM_is_created()
    {
        _networks.StartLeaves = NetworkState.Degraded;

        var result = Open().Set(Parse(Lab));

        Assert.False(result.Succeeded);
        Assert.Equal(ReconcileActionKind.StartNetwork, result.Failure!.Action.Kind);
        Assert.Contains("dnsmasq is not running", result.Failure.Message);
        Assert.Equal(ReconcileActionStatus.NotRun, result.Results.Single(r => r.Action.Kind == ReconcileActionKind.Create).Status);
        Assert.Null(Open().Manager.TryGet("web1"));
    }

    [Fact]
    public void An_absent_network_is_removed_after_the_VMs_and_other_users_are_warned_about()
    {
        Open().Set(Parse(Lab));
        _networks.Add(_networks["lab"].Definition, usedBy: ["web1", "db"]);
        var absent = Parse("""
            @{
              Networks = @( @{ Name = 'lab'; Ensure = 'Absent' } )
              VirtualMachines = @( @{ Name = 'web1'; Ensure = 'Absent' } )
            }
            """);

        var plan = Open().Plan(absent);

        Assert.Equal("Remove:web1 RemoveNetwork:lab", Steps(plan));
        var warning = Assert.Single(plan.Warnings);
        Assert.Contains("'db'", warning);
        Assert.DoesNotContain("'web1'", warning);
        var result = Open().Set(absent);
        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Null(_networks.TryGet("lab"));
    }

    [Fact]
    public void A_manifest_without_networks_never_asks_for_them()
    {
        var root = Path.Combine(_temp.Path, "store2");
        var reconciler = new Reconciler(new VmManager(VmStore.Open(root, allowedPaths: AllowedPaths.StoreOnly(root)), diskImageCreator: new StorageDiskImageCreator()),
            new NetworkManagerOperations(() => throw new InvalidOperationException("the network manager was opened")));
        var desired = Parse("@{ VirtualMachines = @( @{ Name = 'web1'; MemoryStartupBytes = 64MB } ) }");

        Assert.True(reconciler.Set(desired).Succeeded);
        Assert.True(reconciler.Get(desired).InDesiredState);
    }

    [Fact]
    public void Export_states_the_networks_and_reading_it_back_shows_no_drift()
    {
        var lease = new DhcpStaticLease(MacAddress.Parse("52:54:00:aa:00:01"), IPAddress.Parse("10.77.0.10"), "web1");
        var lab = LabDefinition() with { Gateway = IPAddress.Parse("10.77.0.1"), StaticLeases = [lease], DnsDomain = "lab.test", MtuBytes = 9000 };
        var lan = new NetworkDefinition("lan", NetworkMode.Bridge, "br0");
        _networks.Add(lab);
        _networks.Add(lan);
        var vm = new VmDefinition
        {
            Name = "web1",
            Memory = MemorySettings.Fixed(64L << 20),
            Vcpus = VcpuSettings.Fixed(1),
            NetworkAdapters = new ValueList<NetworkAdapterDefinition>([new(null, null, lease.MacAddress, "lab")]),
        };

        var text = ManifestExporter.Write([(vm, VmState.Off)], networks: [lab, lan]);

        Assert.Contains("Network = 'lab'; MacAddress = '52:54:00:aa:00:01'", text);
        Assert.Contains("DhcpRange = @('10.77.0.100', '10.77.0.200')", text);
        Assert.Contains("StaticLeases = @(@{ Mac = '52:54:00:aa:00:01'; Address = '10.77.0.10'; HostName = 'web1' })", text);
        // The VMs are read back by the definitions reader (its Network key is net-core's): here the networks alone.
        var networksOnly = ManifestExporter.Write([], networks: [lab, lan]);
        var again = Parse(networksOnly);
        Assert.Equal(["lab", "lan"], again.Networks.Select(n => n.Name));
        Assert.Empty(Open().Test(again));
    }
}
