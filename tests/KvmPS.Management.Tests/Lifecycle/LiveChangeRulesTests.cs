using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>Which changes a running VM takes live, and the reconciler's plan built on the same rule (no VMs run here).</summary>
public sealed class LiveChangeRulesTests
{
    private static readonly VmDefinition Running = new()
    {
        Name = "web",
        Memory = new MemorySettings(256L << 20, 256L << 20, 1L << 30),
        Vcpus = new VcpuSettings(1, 4),
    };

    private static readonly LiveLimits FourVcpus = new(MaxVcpus: 4, MemoryResize: false, BootMemoryBytes: 256L << 20);

    [Theory]
    [InlineData(1, 4, true)]
    [InlineData(3, 4, true)]
    [InlineData(4, 4, true)]
    [InlineData(5, 8, false)] // beyond the maximum the VMM was started with, even with a new stored maximum
    public void Vcpu_count_is_live_within_the_running_maximum(int count, int maximum, bool live)
    {
        var after = Running with { Vcpus = new VcpuSettings(count, maximum) };
        Assert.Equal(live, LiveChangeRules.CanApplyLive("VcpuCount", Running, after, FourVcpus));
        Assert.False(LiveChangeRules.CanApplyLive("VcpuMaximum", Running, after, FourVcpus));
    }

    [Fact]
    public void Memory_is_live_only_when_the_vmm_resizes_memory_and_within_the_stored_maximum()
    {
        var grown = Running with { Memory = Running.Memory with { StartupBytes = 512L << 20 } };
        Assert.False(LiveChangeRules.CanApplyLive("MemoryStartupBytes", Running, grown, FourVcpus));
        Assert.True(LiveChangeRules.CanApplyLive("MemoryStartupBytes", Running, grown, FourVcpus with { MemoryResize = true }));
        var beyond = Running with { Memory = new MemorySettings(2L << 30, 256L << 20, 2L << 30) };
        Assert.False(LiveChangeRules.CanApplyLive("MemoryStartupBytes", Running, beyond, FourVcpus with { MemoryResize = true }));
        // Below the boot memory is the balloon's job, not virtio-mem's.
        var shrunk = grown with { Memory = new MemorySettings(256L << 20, 128L << 20, 1L << 30) };
        Assert.False(LiveChangeRules.CanApplyLive("MemoryStartupBytes", grown, shrunk, FourVcpus with { MemoryResize = true, BootMemoryBytes = 512L << 20 }));
        Assert.True(LiveChangeRules.CanApplyLive("MemoryStartupBytes", grown, shrunk, FourVcpus with { MemoryResize = true }));
    }

    [Fact]
    public void The_vmm_s_own_memory_maximum_bounds_a_live_resize_not_a_maximum_stored_since()
    {
        // Stored maximum raised to 2 GiB with --config while the VMM runs with its 1 GiB ceiling.
        var raised = Running with { Memory = Running.Memory with { MaximumBytes = 2L << 30 } };
        var target = raised with { Memory = raised.Memory with { StartupBytes = 1536L << 20 } };
        var vmm = FourVcpus with { MemoryResize = true, MaximumMemoryBytes = 1L << 30 };
        Assert.False(LiveChangeRules.CanApplyLive("MemoryStartupBytes", raised, target, vmm));
        Assert.True(LiveChangeRules.CanApplyLive("MemoryStartupBytes", raised, target, vmm with { MaximumMemoryBytes = 2L << 30 }));
        Assert.True(LiveChangeRules.CanApplyLive("MemoryStartupBytes", raised, raised with { Memory = raised.Memory with { StartupBytes = 1L << 30 } }, vmm));
    }

    [Fact]
    public void Restart_needed_lists_what_the_vmm_cannot_take()
    {
        var after = Running with { Vcpus = new VcpuSettings(3, 8), Notes = "n", BalloonEnabled = true };
        Assert.Equal(["VcpuMaximum", "BalloonEnabled"], LiveChangeRules.RestartNeeded(Running, after, FourVcpus));
        // Without a VMM answering nothing is live.
        Assert.Equal(["VcpuCount", "VcpuMaximum", "BalloonEnabled"], LiveChangeRules.RestartNeeded(Running, after, null));
    }

    // ---- the plan ---------------------------------------------------------------------------------------

    private static ReconcilePlan Plan(string vm, LiveLimits? limits, VmState state = VmState.Running, VmDefinition? actual = null) =>
        ReconcilePlanner.Plan(DesiredStateReader.Parse($"@{{ VirtualMachines = @( @{{ Name = 'web'; MemoryMaximumBytes = 1GB; {(vm.Contains("MemoryStartupBytes", StringComparison.Ordinal) ? "" : "MemoryStartupBytes = 256MB; ")}{vm} }} ) }}", "m.psd1"),
            new Dictionary<string, ActualVm> { ["web"] = new("web", actual ?? Running, state, state != VmState.Off, limits) });

    private static string Steps(ReconcilePlan plan) => string.Join(" ", plan.Actions.Select(a => $"{a.Kind}:{a.VmName}"));

    [Fact]
    public void A_vcpu_count_within_the_maximum_on_a_running_vm_is_update_live()
    {
        var plan = Plan("VcpuCount = 3; VcpuMaximum = 4; State = 'Running'", FourVcpus);
        Assert.Equal("UpdateLive:web", Steps(plan));
        Assert.Empty(plan.Warnings);
        Assert.Equal(new Drift("web", "VcpuCount", "3", "1"), Assert.Single(plan.Drifts));
    }

    [Fact]
    public void A_higher_vcpu_maximum_needs_a_restart_and_RestartIfNeeded_governs_it()
    {
        var plan = Plan("VcpuCount = 3; VcpuMaximum = 8", FourVcpus);
        Assert.Equal("UpdateNeedsRestart:web", Steps(plan));
        Assert.Contains(plan.Warnings, w => w.Contains("VcpuMaximum", StringComparison.Ordinal) && !w.Contains("VcpuCount", StringComparison.Ordinal));
        Assert.Equal("Stop:web Update:web Start:web", Steps(Plan("VcpuCount = 3; VcpuMaximum = 8; RestartIfNeeded = $true", FourVcpus)));
    }

    [Fact]
    public void A_count_beyond_the_running_maximum_needs_a_restart()
    {
        // The stored maximum is 8 already (raised while running), the VMM still has 4.
        var plan = Plan("VcpuCount = 6; VcpuMaximum = 8", FourVcpus, actual: Running with { Vcpus = new VcpuSettings(1, 8) });
        Assert.Equal("UpdateNeedsRestart:web", Steps(plan));
        Assert.Equal(new Drift("web", "VcpuCount", "6", "1"), Assert.Single(plan.Drifts));
    }

    [Fact]
    public void Memory_within_the_maximum_is_live_when_the_vmm_resizes_memory()
    {
        Assert.Equal("UpdateNeedsRestart:web", Steps(Plan("MemoryStartupBytes = 512MB; MemoryMinimumBytes = 256MB; VcpuMaximum = 4", FourVcpus)));
        Assert.Equal("UpdateLive:web", Steps(Plan("MemoryStartupBytes = 512MB; MemoryMinimumBytes = 256MB; VcpuMaximum = 4", FourVcpus with { MemoryResize = true })));
    }

    [Fact]
    public void A_vm_that_is_off_is_updated_whatever_changes()
    {
        Assert.Equal("Update:web", Steps(Plan("VcpuCount = 3; VcpuMaximum = 8", null, VmState.Off)));
    }
}
