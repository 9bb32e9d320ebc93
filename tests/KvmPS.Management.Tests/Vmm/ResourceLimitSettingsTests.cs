using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Vmm;

/// <summary>Issue 17 item 1: CPU weight and cap and the VMM's memory overhead limit as VM settings (docs/confinement.md, "cgroup limits").</summary>
public sealed class ResourceLimitSettingsTests
{
    private static VmDefinition Limited(string name = "vm1") => TestDefinitions.Minimal(name) with
    {
        Vcpus = new VcpuSettings(2, 4),
        Memory = new MemorySettings(256L << 20, 256L << 20, 512L << 20),
        CpuRelativeWeight = 250,
        CpuMaximumPercent = 50,
        VmmOverheadLimitBytes = 64L << 20,
    };

    [Fact]
    public void Defaults_are_hyper_vs_and_give_the_vmm_no_limit_flags()
    {
        var plain = TestDefinitions.Minimal("vm1");
        Assert.Equal(100, plain.CpuRelativeWeight);
        Assert.Equal(100, plain.CpuMaximumPercent);
        Assert.Equal(0, plain.VmmOverheadLimitBytes);
        Assert.False(VmResourceLimits.Any(plain));
        Assert.True(VmResourceLimits.For(plain, 1).IsNone);
        Assert.Empty(VmmCgroupOptions.Arguments(plain, []));
    }

    [Fact]
    public void The_cap_is_a_share_of_the_vms_vcpus_and_memory_is_the_most_guest_ram_plus_the_overhead()
    {
        var limits = VmResourceLimits.For(Limited(), vcpus: 2);
        Assert.Equal(250, limits.CpuWeight);
        Assert.Equal(100, limits.CpuMaxPercent); // 50% of 2 vCPUs is one host CPU
        Assert.Equal((512L << 20) + (64L << 20), limits.MemoryMaxBytes); // MemoryMaximumBytes, hot-plug included
        Assert.Equal(200, VmResourceLimits.For(Limited(), vcpus: 4).CpuMaxPercent);
        Assert.Equal(1, VmResourceLimits.CapPercentOfOneCpu(1, 0));
    }

    [Fact]
    public void The_launcher_passes_the_limits_with_a_cgroup_jailed_or_not()
    {
        var argv = VmmCgroupOptions.Arguments(Limited(), []);
        Assert.Equal(["--cgroup", "kvmps/vm1", "--cpu-weight", "250", "--cpu-max-percent", "100", "--memory-max-bytes", (576L << 20).ToString()], argv);
        // The jail names the cgroup already: not twice.
        var jailed = VmmCgroupOptions.Arguments(Limited(), ["--user", "kvmps", "--cgroup", "kvmps/vm1"]);
        Assert.DoesNotContain("--cgroup", jailed);
        Assert.Contains("--cpu-weight", jailed);
        Assert.Equal(["--cgroup", "kvmps/vm1", "--cpu-weight", "7"], VmmCgroupOptions.Arguments(TestDefinitions.Minimal("vm1") with { CpuRelativeWeight = 7 }, []));
    }

    [Theory]
    [InlineData(0, 100, 0L, "CpuRelativeWeight", "got 0")]
    [InlineData(10001, 100, 0L, "CpuRelativeWeight", "got 10001")]
    [InlineData(100, 0, 0L, "CpuMaximumPercent", "got 0")]
    [InlineData(100, 101, 0L, "CpuMaximumPercent", "got 101")]
    [InlineData(100, 100, 4096L, "VmmOverheadLimitBytes", "got 4096")]
    [InlineData(100, 100, (32L << 20) + 512, "VmmOverheadLimitBytes", "got 33554944")]
    [InlineData(100, 100, -1L, "VmmOverheadLimitBytes", "got -1")]
    public void Values_out_of_range_are_refused_naming_the_setting_and_the_value(int weight, int cap, long overhead, string property, string value)
    {
        var bad = TestDefinitions.Minimal("vm1") with { CpuRelativeWeight = weight, CpuMaximumPercent = cap, VmmOverheadLimitBytes = overhead };
        var e = Assert.Throws<VmDefinitionException>(() => bad.Validate());
        Assert.Equal(property, e.Property);
        Assert.Contains(value, e.Message);
    }

    [Fact]
    public void The_settings_round_trip_through_vm_json_and_manifests()
    {
        var definition = Limited();
        Assert.Equal(definition, VmDefinitionJson.Deserialize(VmDefinitionJson.Serialize(definition)));
        // A VM without limits keeps vm.json as before: no new keys.
        Assert.DoesNotContain("Cpu", VmDefinitionJson.Serialize(TestDefinitions.Minimal("vm1")));

        var desired = DesiredStateReader.Parse("@{ Name = 'vm1'; MemoryStartupBytes = 256MB; CpuRelativeWeight = 300; CpuMaximumPercent = 25; VmmOverheadLimitBytes = 32MB }", "m.psd1");
        var vm = Assert.Single(desired.Vms);
        Assert.Equal(300, vm.Definition!.CpuRelativeWeight);
        Assert.Equal(25, vm.Definition.CpuMaximumPercent);
        Assert.Equal(32L << 20, vm.Definition.VmmOverheadLimitBytes);
        Assert.Contains("CpuRelativeWeight", vm.ManagedProperties);
        Assert.Contains("VmmOverheadLimitBytes", vm.ManagedProperties);
        Assert.DoesNotContain("CpuMaximumPercent", Assert.Single(DesiredStateReader.Parse("@{ Name = 'vm1'; MemoryStartupBytes = 256MB; CpuRelativeWeight = 300 }", "m.psd1").Vms).ManagedProperties);

        var exported = ManifestExporter.Write([(definition, VmState.Off)]);
        Assert.Matches(@"CpuRelativeWeight\s*=\s*250", exported);
        Assert.Matches(@"CpuMaximumPercent\s*=\s*50", exported);
        Assert.Matches(@"VmmOverheadLimitBytes\s*=\s*64MB", exported);
        var again = Assert.Single(DesiredStateReader.Parse(exported, "e.psd1").Vms);
        Assert.Equal((250, 50, 64L << 20), (again.Definition!.CpuRelativeWeight, again.Definition.CpuMaximumPercent, again.Definition.VmmOverheadLimitBytes));
        Assert.DoesNotContain("CpuRelativeWeight", ManifestExporter.Write([(TestDefinitions.Minimal("vm1"), VmState.Off)]));

        var e = Assert.Throws<DesiredStateException>(() => DesiredStateReader.Parse("@{ Name = 'vm1'; MemoryStartupBytes = 256MB; CpuMaximumPercent = 150 }", "m.psd1"));
        Assert.Contains("CpuMaximumPercent", e.Message);
        Assert.Contains("150", e.Message);
    }

    [Fact]
    public void A_change_is_diffed_overlaid_and_live_only_on_a_vmm_with_its_own_cgroup()
    {
        var before = TestDefinitions.Minimal("vm1");
        var after = new VmSettingsChange { CpuRelativeWeight = 50, CpuMaximumPercent = 20, VmmOverheadLimitBytes = 16L << 20 }.ApplyTo(before);
        Assert.Equal(["CpuRelativeWeight", "CpuMaximumPercent", "VmmOverheadLimitBytes"], VmDefinitionDiff.Compare(before, after).Select(c => c.Property));
        var overlaid = DefinitionOverlay.Apply(before, after, DefinitionOverlay.ManagedFromKeys(["cpurelativeweight"]));
        Assert.Equal(50, overlaid.CpuRelativeWeight);
        Assert.Equal(100, overlaid.CpuMaximumPercent);

        var withCgroup = new LiveLimits(1, false) { CgroupLimits = true };
        var without = new LiveLimits(1, false);
        Assert.Empty(LiveChangeRules.RestartNeeded(before, after, withCgroup));
        Assert.Equal(["CpuRelativeWeight", "CpuMaximumPercent", "VmmOverheadLimitBytes"], LiveChangeRules.RestartNeeded(before, after, without));
    }
}

/// <summary>The reconcile plan agrees with the live path: limits are live on a VMM with its own cgroup, else a restart.</summary>
public sealed class ResourceLimitPlanTests
{
    [Fact]
    public void Plan_is_live_only_where_the_vmm_has_its_own_cgroup()
    {
        var manifest = DesiredStateReader.Parse("@{ Name = 'web'; MemoryStartupBytes = 256MB; CpuRelativeWeight = 50 }", "m.psd1");
        var running = new ActualVm("web", TestDefinitions.Minimal("web"), VmState.Running, true);
        var host = (ActualVm vm) => new Dictionary<string, ActualVm>(StringComparer.Ordinal) { ["web"] = vm };
        var live = ReconcilePlanner.Plan(manifest, host(running with { Limits = new LiveLimits(1, false) { CgroupLimits = true } }));
        Assert.Equal(ReconcileActionKind.UpdateLive, Assert.Single(live.Actions).Kind);
        Assert.Equal(new Drift("web", "CpuRelativeWeight", "50", "100"), Assert.Single(live.Drifts));
        var restart = ReconcilePlanner.Plan(manifest, host(running with { Limits = new LiveLimits(1, false) }));
        Assert.Equal(ReconcileActionKind.UpdateNeedsRestart, Assert.Single(restart.Actions).Kind);
    }
}
