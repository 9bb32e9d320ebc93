using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>vCPU count changes on a running built-in guest: hot-plugged by the same VMM process, and stored.</summary>
[Collection(VmmCollection.Name)]
public sealed class LiveVcpuVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly VmManager _manager;
    private readonly TempDirectory _dir = new();

    public LiveVcpuVmmTests(VmmFixture fixture)
    {
        _sandbox = new LifecycleSandbox(fixture);
        _manager = _sandbox.Manager;
    }

    public void Dispose()
    {
        _sandbox.Dispose();
        _dir.Dispose();
    }

    private int StartWithMaximum(string name, int count, int maximum)
    {
        _manager.New(TestDefinitions.Minimal(name) with { Memory = MemorySettings.Fixed(64L << 20), Vcpus = new VcpuSettings(count, maximum) });
        return _manager.Start(name).Pid!.Value;
    }

    /// <summary>The VMM's own answer: vCPUs it runs now (status) and its maximum (describe).</summary>
    private (int Vcpus, int MaxVcpus) FromVmm(string name)
    {
        using var client = VmmClient.Connect(_sandbox.Store.SocketPath(name));
        return (client.Status().Vcpus.Count, client.Describe().MaxVcpus);
    }

    [Fact]
    public void SetVcpu_hot_adds_within_the_maximum_in_the_same_vmm_and_persists()
    {
        var pid = StartWithMaximum("hot", 1, 4);

        var result = _manager.SetVcpu("hot", 3);

        var change = Assert.Single(result.Changes);
        Assert.Equal(("VcpuCount", "1", "3", ChangeApplication.AppliedLive), (change.Property, change.OldValue, change.NewValue, change.Application));
        Assert.False(result.RestartNeeded);
        Assert.Equal((3, 4), FromVmm("hot"));
        var info = _manager.Get("hot");
        Assert.Equal(pid, info.Pid);
        Assert.Equal(new VcpuSettings(3, 4), _sandbox.Store.Get("hot").Vcpus);
    }

    [Fact]
    public void Beyond_the_maximum_is_refused_naming_the_limit_and_the_vm_is_unchanged()
    {
        var pid = StartWithMaximum("cap", 1, 2);

        var error = Assert.Throws<ManagementValidationException>(() => _manager.SetVcpu("cap", 3));
        Assert.Equal("VcpuCount", error.Property);
        Assert.Contains("maximum of 2", error.Message);
        Assert.Contains("restart", error.Message);

        // --live with a higher maximum: the count cannot reach the running VM, so nothing is stored either.
        var live = Assert.Throws<ManagementValidationException>(() => _manager.SetVcpu("cap", 3, 4, ChangeScope.Live));
        Assert.Contains("running VM's maximum of 2", live.Message);

        Assert.Equal(new VcpuSettings(1, 2), _sandbox.Store.Get("cap").Vcpus);
        Assert.Equal((1, 2), FromVmm("cap"));
        Assert.Equal(pid, _manager.Get("cap").Pid);
    }

    [Fact]
    public void Config_scope_stores_only_and_live_scope_needs_a_running_vm()
    {
        StartWithMaximum("scope", 1, 4);
        var stored = _manager.SetVcpu("scope", 2, scope: ChangeScope.Config);
        Assert.Equal(ChangeApplication.RestartNeeded, Assert.Single(stored.Changes).Application);
        Assert.Equal((1, 4), FromVmm("scope"));
        Assert.Equal(2, _sandbox.Store.Get("scope").Vcpus.Count);

        _manager.Stop("scope", force: true);
        var off = Assert.Throws<VmStateException>(() => _manager.SetVcpu("scope", 3, scope: ChangeScope.Live));
        Assert.Contains("VM 'scope' is off", off.Message);
        Assert.Equal(2, _sandbox.Store.Get("scope").Vcpus.Count);
    }

    [Fact]
    public void The_reconciler_applies_a_vcpu_count_from_an_edited_manifest_live()
    {
        var path = Path.Combine(_dir.Path, "host.psd1");
        string Manifest(int count) => $"@{{ VirtualMachines = @( @{{ Name = 'ds-hot'; MemoryStartupBytes = 64MB; VcpuCount = {count}; VcpuMaximum = 4; State = 'Running' }} ) }}";
        File.WriteAllText(path, Manifest(1));
        var reconciler = new Reconciler(_manager);
        Assert.True(reconciler.Set(DesiredStateReader.ReadFiles([path])).Succeeded);
        var pid = _manager.Get("ds-hot").Pid;

        File.WriteAllText(path, Manifest(3));
        var desired = DesiredStateReader.ReadFiles([path]);
        var plan = reconciler.Plan(desired);
        Assert.Equal([ReconcileActionKind.UpdateLive], plan.Actions.Select(a => a.Kind));
        var result = reconciler.Set(desired);

        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(result.Results[0].Change!.Changes).Application);
        Assert.Equal(pid, _manager.Get("ds-hot").Pid);
        Assert.Equal((3, 4), FromVmm("ds-hot"));
        Assert.True(reconciler.Plan(desired).IsEmpty);
    }
}
