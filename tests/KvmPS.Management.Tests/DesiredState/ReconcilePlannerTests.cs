using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Management.Tests.DesiredState;

/// <summary>Every transition the planner knows, on synthetic host snapshots (no VMs are run here).</summary>
public sealed class ReconcilePlannerTests
{
    private static DesiredHostState Manifest(string text) => DesiredStateReader.Parse(text, "m.psd1");

    private static Dictionary<string, ActualVm> Host(params ActualVm[] vms) => vms.ToDictionary(v => v.Name, StringComparer.Ordinal);

    private static ActualVm Vm(string name, VmState state, int vcpus = 1, long memory = 256L << 20, string notes = "") => new(name,
        new VmDefinition { Name = name, Memory = MemorySettings.Fixed(memory), Vcpus = VcpuSettings.Fixed(vcpus), Notes = notes },
        state, state is not (VmState.Off or VmState.Saved));

    private static string Steps(ReconcilePlan plan) => string.Join(" ", plan.Actions.Select(a => $"{a.Kind}:{a.VmName}"));

    private const string Web = "@{ Defaults = @{ MemoryStartupBytes = 256MB }; VirtualMachines = @( @{ Name = 'web'; State = 'Running'; VcpuCount = 2 } ) }";

    [Fact]
    public void Absent_to_present_and_running_creates_then_starts()
    {
        var plan = ReconcilePlanner.Plan(Manifest(Web), Host());
        Assert.Equal("Create:web Start:web", Steps(plan));
        Assert.Equal(new Drift("web", "Ensure", "Present", "Absent"), Assert.Single(plan.Drifts));
        var create = plan.Actions[0];
        Assert.Equal(2, create.Definition!.Vcpus.Count);
        Assert.Equal(256L << 20, create.Definition.Memory.StartupBytes);
    }

    [Fact]
    public void Present_without_state_is_only_created()
    {
        var plan = ReconcilePlanner.Plan(Manifest("@{ Name = 'x'; MemoryStartupBytes = 128MB }"), Host());
        Assert.Equal("Create:x", Steps(plan));
    }

    [Fact]
    public void Present_to_absent_while_running_stops_then_removes()
    {
        var plan = ReconcilePlanner.Plan(Manifest("@{ VirtualMachines = @( @{ Name = 'old'; Ensure = 'Absent' } ) }"), Host(Vm("old", VmState.Running)));
        Assert.Equal("Stop:old Remove:old", Steps(plan));
        Assert.Equal(new Drift("old", "Ensure", "Absent", "Present"), Assert.Single(plan.Drifts));
    }

    [Fact]
    public void Absent_vm_that_does_not_exist_needs_nothing()
    {
        var plan = ReconcilePlanner.Plan(Manifest("@{ VirtualMachines = @( @{ Name = 'old'; Ensure = 'Absent' } ) }"), Host());
        Assert.True(plan.IsEmpty);
        Assert.True(plan.InDesiredState);
    }

    [Fact]
    public void Off_to_running_starts()
    {
        var plan = ReconcilePlanner.Plan(Manifest(Web), Host(Vm("web", VmState.Off, vcpus: 2)));
        Assert.Equal("Start:web", Steps(plan));
        Assert.Equal(new Drift("web", "State", "Running", "Off"), Assert.Single(plan.Drifts));
    }

    [Fact]
    public void Running_to_off_stops()
    {
        var plan = ReconcilePlanner.Plan(Manifest(Web.Replace("'Running'", "'Off'")), Host(Vm("web", VmState.Running, vcpus: 2)));
        Assert.Equal("Stop:web", Steps(plan));
    }

    [Fact]
    public void Paused_to_running_resumes_and_running_to_paused_suspends()
    {
        Assert.Equal("Resume:web", Steps(ReconcilePlanner.Plan(Manifest(Web), Host(Vm("web", VmState.Paused, vcpus: 2)))));
        Assert.Equal("Suspend:web", Steps(ReconcilePlanner.Plan(Manifest(Web.Replace("'Running'", "'Paused'")), Host(Vm("web", VmState.Running, vcpus: 2)))));
        Assert.Equal("Start:web Suspend:web", Steps(ReconcilePlanner.Plan(Manifest(Web.Replace("'Running'", "'Paused'")), Host(Vm("web", VmState.Off, vcpus: 2)))));
    }

    [Fact]
    public void A_saved_VM_is_started_to_resume_it_and_stopped_to_discard_its_saved_state()
    {
        Assert.Equal("Start:web", Steps(ReconcilePlanner.Plan(Manifest(Web), Host(Vm("web", VmState.Saved, vcpus: 2)))));
        Assert.Equal("Start:web Suspend:web", Steps(ReconcilePlanner.Plan(Manifest(Web.Replace("'Running'", "'Paused'")), Host(Vm("web", VmState.Saved, vcpus: 2)))));
        var off = ReconcilePlanner.Plan(Manifest(Web.Replace("'Running'", "'Off'")), Host(Vm("web", VmState.Saved, vcpus: 2)));
        Assert.Equal("Stop:web", Steps(off));
        Assert.Contains("saved state is discarded", off.Actions[0].Reason);
    }

    [Fact]
    public void Paused_to_off_stops()
    {
        Assert.Equal("Stop:web", Steps(ReconcilePlanner.Plan(Manifest(Web.Replace("'Running'", "'Off'")), Host(Vm("web", VmState.Paused, vcpus: 2)))));
    }

    [Fact]
    public void Crashed_vm_that_should_run_is_cleared_then_started()
    {
        var crashed = Vm("web", VmState.Crashed, vcpus: 2) with { IsActive = true };
        Assert.Equal("Stop:web Start:web", Steps(ReconcilePlanner.Plan(Manifest(Web), Host(crashed))));
    }

    [Fact]
    public void Drift_on_an_off_vm_is_a_stored_update()
    {
        var plan = ReconcilePlanner.Plan(Manifest(Web.Replace("'Running'", "'Off'")), Host(Vm("web", VmState.Off, vcpus: 1)));
        Assert.Equal("Update:web", Steps(plan));
        Assert.Contains(new Drift("web", "VcpuCount", "2", "1"), plan.Drifts);
        Assert.Contains(new Drift("web", "VcpuMaximum", "2", "1"), plan.Drifts);
    }

    [Fact]
    public void Hardware_drift_on_a_running_vm_needs_a_restart_and_warns()
    {
        var plan = ReconcilePlanner.Plan(Manifest(Web), Host(Vm("web", VmState.Running, vcpus: 1)));
        Assert.Equal("UpdateNeedsRestart:web", Steps(plan));
        Assert.Contains(plan.Warnings, w => w.Contains("VcpuCount", StringComparison.Ordinal) && w.Contains("RestartIfNeeded", StringComparison.Ordinal));
    }

    [Fact]
    public void Disks_and_adapters_added_or_removed_on_a_running_vm_that_hot_plugs_are_live()
    {
        var hotplug = new LiveLimits(1, false, 256L << 20) { DeviceHotplug = true };
        var running = Vm("web", VmState.Running) with { Limits = hotplug };
        running = running with { Definition = running.Definition with { Disks = new ValueList<DiskDefinition>([new DiskDefinition("a.raw")]) } };

        var add = Manifest("@{ Name = 'web'; MemoryStartupBytes = 256MB; Disks = @( @{ Path = 'a.raw' }, @{ Path = 'b.raw' } ); NetworkAdapters = @( @{ Tap = 't0' } ) }");
        Assert.Equal("UpdateLive:web", Steps(ReconcilePlanner.Plan(add, Host(running))));
        var remove = Manifest("@{ Name = 'web'; MemoryStartupBytes = 256MB; Disks = @() }");
        Assert.Equal("UpdateLive:web", Steps(ReconcilePlanner.Plan(remove, Host(running))));

        // A disk the VM has, changed in place, cannot be hot-plugged: a restart.
        var inPlace = Manifest("@{ Name = 'web'; MemoryStartupBytes = 256MB; Disks = @( @{ Path = 'a.raw'; ReadOnly = $true } ) }");
        Assert.Equal("UpdateNeedsRestart:web", Steps(ReconcilePlanner.Plan(inPlace, Host(running))));
        // A VMM without device.add: a restart.
        Assert.Equal("UpdateNeedsRestart:web", Steps(ReconcilePlanner.Plan(add, Host(running with { Limits = hotplug with { DeviceHotplug = false } }))));
    }

    [Fact]
    public void Vfio_user_devices_added_or_removed_on_a_running_vm_that_hot_plugs_are_live()
    {
        var hotplug = new LiveLimits(1, false, 256L << 20) { DeviceHotplug = true };
        var running = Vm("web", VmState.Running) with { Limits = hotplug };

        var add = Manifest("@{ Name = 'web'; MemoryStartupBytes = 256MB; VfioUserDevices = @('/run/dev.sock') }");
        Assert.Equal("UpdateLive:web", Steps(ReconcilePlanner.Plan(add, Host(running))));
        var withDevice = running with { Definition = running.Definition with { VfioUserDevices = new ValueList<string>(["/run/dev.sock"]) } };
        var remove = Manifest("@{ Name = 'web'; MemoryStartupBytes = 256MB; VfioUserDevices = @() }");
        Assert.Equal("UpdateLive:web", Steps(ReconcilePlanner.Plan(remove, Host(withDevice))));
        // A VMM that cannot hot-plug takes it at the next start.
        Assert.Equal("UpdateNeedsRestart:web", Steps(ReconcilePlanner.Plan(add, Host(running with { Limits = hotplug with { DeviceHotplug = false } }))));
    }

    [Fact]
    public void Host_only_drift_on_a_running_vm_is_live()
    {
        var manifest = Manifest("@{ Name = 'web'; MemoryStartupBytes = 256MB; State = 'Running'; Notes = 'new' }");
        var plan = ReconcilePlanner.Plan(manifest, Host(Vm("web", VmState.Running, notes: "old")));
        Assert.Equal("UpdateLive:web", Steps(plan));
        Assert.Equal(new Drift("web", "Notes", "new", "old"), Assert.Single(plan.Drifts));
    }

    [Fact]
    public void RestartIfNeeded_turns_the_update_into_stop_update_start()
    {
        var manifest = Manifest(Web.Replace("VcpuCount = 2", "VcpuCount = 2; RestartIfNeeded = $true"));
        var plan = ReconcilePlanner.Plan(manifest, Host(Vm("web", VmState.Running, vcpus: 1)));
        Assert.Equal("Stop:web Update:web Start:web", Steps(plan));
        Assert.Empty(plan.Warnings);
    }

    [Fact]
    public void RestartIfNeeded_restores_a_paused_vm()
    {
        var manifest = Manifest("@{ Name = 'web'; MemoryStartupBytes = 256MB; VcpuCount = 2; RestartIfNeeded = $true }");
        var plan = ReconcilePlanner.Plan(manifest, Host(Vm("web", VmState.Paused, vcpus: 1)));
        Assert.Equal("Stop:web Update:web Start:web Suspend:web", Steps(plan));
    }

    [Fact]
    public void Unstated_properties_are_not_managed()
    {
        // The manifest states only the name and the state: the VM's 4 vCPUs and notes are left alone.
        var manifest = DesiredStateReader.FromDictionary(new Dictionary<string, object?> { ["Name"] = "web", ["MemoryStartupBytes"] = 256L << 20, ["State"] = "Running" });
        var plan = ReconcilePlanner.Plan(new DesiredHostState(new[] { "x" }, new[] { manifest }), Host(Vm("web", VmState.Running, vcpus: 4, notes: "mine")));
        Assert.True(plan.IsEmpty);
    }

    [Fact]
    public void A_stated_property_that_conflicts_with_the_current_definition_is_a_manifest_error()
    {
        var manifest = Manifest("@{ VirtualMachines = @(\n  @{ Name = 'web'; MemoryMaximumBytes = 128MB; MemoryStartupBytes = 128MB; MemoryMinimumBytes = 128MB }\n) }");
        var desired = manifest.Vms[0] with { ManagedProperties = new HashSet<string> { "MemoryMaximumBytes" } };
        var error = Assert.Throws<DesiredStateException>(() =>
            ReconcilePlanner.Plan(new DesiredHostState(manifest.Files, new[] { desired }), Host(Vm("web", VmState.Off, memory: 256L << 20))));
        Assert.Equal((2, 3), (error.Line, error.Column));
        Assert.Contains("VM 'web': MemoryStartupBytes", error.Message);
    }

    [Fact]
    public void Phases_order_removes_stops_updates_creates_starts()
    {
        var manifest = Manifest("""
            @{
              Defaults = @{ MemoryStartupBytes = 256MB }
              VirtualMachines = @(
                @{ Name = 'new1'; State = 'Running' }
                @{ Name = 'upd'; VcpuCount = 2; State = 'Running' }
                @{ Name = 'halt'; State = 'Off' }
                @{ Name = 'gone'; Ensure = 'Absent' }
                @{ Name = 'new2'; State = 'Running' }
              )
            }
            """);
        var plan = ReconcilePlanner.Plan(manifest, Host(Vm("upd", VmState.Off), Vm("halt", VmState.Running), Vm("gone", VmState.Paused)));
        Assert.Equal("Stop:gone Remove:gone Stop:halt Update:upd Create:new1 Create:new2 Start:new1 Start:upd Start:new2", Steps(plan));
    }

    [Fact]
    public void A_matching_host_plans_nothing()
    {
        var plan = ReconcilePlanner.Plan(Manifest(Web), Host(Vm("web", VmState.Running, vcpus: 2)));
        Assert.True(plan.IsEmpty);
        Assert.True(plan.InDesiredState);
        Assert.Empty(plan.Warnings);
    }

    [Fact]
    public void Planning_is_idempotent_once_the_plan_is_carried_out()
    {
        // Simulate Set: apply each step to the snapshot, then plan again.
        var manifest = Manifest("""
            @{ Defaults = @{ MemoryStartupBytes = 256MB; RestartIfNeeded = $true }
               VirtualMachines = @( @{ Name = 'a'; State = 'Running'; VcpuCount = 2 }, @{ Name = 'b'; State = 'Paused' },
                                    @{ Name = 'c'; State = 'Off'; Notes = 'n' }, @{ Name = 'd'; Ensure = 'Absent' } ) }
            """);
        var host = Host(Vm("a", VmState.Running), Vm("c", VmState.Running), Vm("d", VmState.Running));
        var plan = ReconcilePlanner.Plan(manifest, host);
        Assert.False(plan.IsEmpty);
        foreach (var action in plan.Actions)
        {
            host.TryGetValue(action.VmName, out var vm);
            host[action.VmName] = action.Kind switch
            {
                ReconcileActionKind.Create => new ActualVm(action.VmName, action.Definition!, VmState.Off, false),
                ReconcileActionKind.Update or ReconcileActionKind.UpdateLive or ReconcileActionKind.UpdateNeedsRestart => vm! with { Definition = action.Definition! },
                ReconcileActionKind.Start or ReconcileActionKind.Resume => vm! with { State = VmState.Running, IsActive = true },
                ReconcileActionKind.Suspend => vm! with { State = VmState.Paused },
                ReconcileActionKind.Stop => vm! with { State = VmState.Off, IsActive = false },
                _ => null!,
            };
            if (action.Kind == ReconcileActionKind.Remove)
                host.Remove(action.VmName);
        }
        var again = ReconcilePlanner.Plan(manifest, host);
        Assert.True(again.IsEmpty, Steps(again));
        Assert.True(again.InDesiredState, string.Join("; ", again.Drifts));
    }
}
