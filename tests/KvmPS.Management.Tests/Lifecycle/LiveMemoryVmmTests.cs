using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// Memory changes on a running built-in guest (virtio-mem, memory.set) and the present vCPU count after a removal:
/// the same VMM process, the VMM's own numbers checked.
/// </summary>
[Collection(VmmCollection.Name)]
public sealed class LiveMemoryVmmTests : IDisposable
{
    private const long MiB = 1L << 20;
    private readonly LifecycleSandbox _sandbox;
    private readonly VmManager _manager;
    private readonly TempDirectory _dir = new();

    public LiveMemoryVmmTests(VmmFixture fixture)
    {
        _sandbox = new LifecycleSandbox(fixture);
        _manager = _sandbox.Manager;
    }

    public void Dispose()
    {
        _sandbox.Dispose();
        _dir.Dispose();
    }

    private int StartWithMemory(string name, long startupBytes, long maximumBytes)
    {
        _manager.New(TestDefinitions.Minimal(name) with { Memory = new MemorySettings(startupBytes, startupBytes, maximumBytes) });
        return _manager.Start(name).Pid!.Value;
    }

    private KvmPS.Contract.MemoryStateReply FromVmm(string name)
    {
        using var client = VmmClient.Connect(_sandbox.Store.SocketPath(name));
        return client.GetMemory();
    }

    [Fact]
    public void Memory_grows_live_within_the_maximum_in_the_same_vmm_and_the_guest_plugs_it()
    {
        var pid = StartWithMemory("grow", 256 * MiB, 1024 * MiB);
        Assert.Equal(1024 * MiB, FromVmm("grow").MaximumBytes);
        Assert.True(_manager.Get("grow").Live!.MemoryResize);

        var result = _manager.ChangeSettings("grow", new VmSettingsChange { MemoryStartupBytes = 512 * MiB });

        var change = Assert.Single(result.Changes);
        Assert.Equal(("MemoryStartupBytes", ChangeApplication.AppliedLive), (change.Property, change.Application));
        Assert.False(result.RestartNeeded);
        Assert.Equal(512 * MiB, FromVmm("grow").RequestedBytes);
        Assert.Equal(pid, _manager.Get("grow").Pid);
        Assert.Equal(new MemorySettings(512 * MiB, 256 * MiB, 1024 * MiB), _sandbox.Store.Get("grow").Memory);

        // The built-in guest's driver plugs on the configuration-change interrupt, as Linux's does; then the VM shows
        // the memory it has.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (FromVmm("grow").PluggedBytes != 256 * MiB && DateTime.UtcNow < deadline)
            Thread.Sleep(100);
        Assert.Equal(256 * MiB, FromVmm("grow").PluggedBytes);
        var live = _manager.Get("grow").Live!;
        Assert.Equal((512 * MiB, 512 * MiB, 256 * MiB), (live.MemoryCurrentBytes, live.MemoryRequestedBytes!.Value, live.MemoryBytes));

        // Back down to the boot size: memory.set asks the guest to unplug; the stored startup follows.
        var shrink = _manager.ChangeSettings("grow", new VmSettingsChange { MemoryStartupBytes = 256 * MiB }, ChangeScope.Live);
        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(shrink.Changes).Application);
        Assert.Equal(256 * MiB, FromVmm("grow").RequestedBytes);
        Assert.Equal(pid, _manager.Get("grow").Pid);
    }

    [Fact]
    public void Memory_beyond_the_maximum_the_vmm_was_started_with_is_refused_naming_it_and_nothing_changes()
    {
        var pid = StartWithMemory("cap", 256 * MiB, 512 * MiB);

        var error = Assert.Throws<ManagementValidationException>(() =>
            _manager.ChangeSettings("cap", new VmSettingsChange { MemoryStartupBytes = 768 * MiB }));
        Assert.Equal("MemoryStartupBytes", error.Property);
        Assert.Contains("maximum memory of 512MB", error.Message);

        // --live with a higher maximum: the memory cannot reach the running VM, so nothing is stored either.
        var live = Assert.Throws<ManagementValidationException>(() => _manager.ChangeSettings("cap",
            new VmSettingsChange { MemoryStartupBytes = 768 * MiB, MemoryMaximumBytes = 1024 * MiB }, ChangeScope.Live));
        Assert.Contains("512MB", live.Message);

        // A new maximum given with it: stored for the next start (the running VMM cannot raise its ceiling).
        var stored = _manager.ChangeSettings("cap", new VmSettingsChange { MemoryStartupBytes = 768 * MiB, MemoryMaximumBytes = 1024 * MiB });
        Assert.True(stored.RestartNeeded);
        Assert.All(stored.Changes, c => Assert.Equal(ChangeApplication.RestartNeeded, c.Application));
        Assert.Equal(256 * MiB, FromVmm("cap").RequestedBytes);
        Assert.Equal(pid, _manager.Get("cap").Pid);
    }

    [Fact]
    public void A_balloon_target_above_the_boot_memory_grows_the_vm_live_and_empties_the_balloon()
    {
        var definition = TestDefinitions.Minimal("dyn") with { Memory = new MemorySettings(256 * MiB, 128 * MiB, 512 * MiB), BalloonEnabled = true };
        _manager.New(definition);
        var pid = _manager.Start("dyn").Pid;

        Assert.True(_manager.SetBalloon("dyn", 160 * MiB).AppliedLive); // below the boot memory: the balloon
        using (var client = VmmClient.Connect(_sandbox.Store.SocketPath("dyn")))
            Assert.Equal(96 * MiB, client.GetBalloon().TargetBytes);

        var grow = _manager.SetBalloon("dyn", 384 * MiB); // above it: virtio-mem
        Assert.True(grow.AppliedLive);
        Assert.False(grow.RestartNeeded);
        Assert.Equal(384 * MiB, FromVmm("dyn").RequestedBytes);
        using (var client = VmmClient.Connect(_sandbox.Store.SocketPath("dyn")))
            Assert.Equal(0, client.GetBalloon().TargetBytes);
        Assert.Equal(384 * MiB, _sandbox.Store.Get("dyn").Memory.StartupBytes);
        Assert.Equal(pid, _manager.Get("dyn").Pid);
    }

    [Fact]
    public void A_vm_without_a_maximum_above_startup_gets_no_virtio_mem_and_a_memory_change_waits_for_a_restart()
    {
        StartWithMemory("fixed", 64 * MiB, 64 * MiB);
        Assert.False(_manager.Get("fixed").Live!.MemoryResize);
        var result = _manager.ChangeSettings("fixed", new VmSettingsChange { MemoryStartupBytes = 128 * MiB });
        Assert.True(result.RestartNeeded);
        Assert.Equal(64 * MiB, _manager.Get("fixed").Live!.MemoryCurrentBytes);
    }

    [Fact]
    public void The_reconciler_applies_memory_from_an_edited_manifest_live_and_a_new_maximum_needs_a_restart()
    {
        var path = Path.Combine(_dir.Path, "host.psd1");
        string Manifest(int startupMb, int maximumMb) =>
            $"@{{ VirtualMachines = @( @{{ Name = 'ds-mem'; MemoryStartupBytes = {startupMb}MB; MemoryMaximumBytes = {maximumMb}MB; State = 'Running' }} ) }}";
        File.WriteAllText(path, Manifest(256, 1024));
        var reconciler = new Reconciler(_manager);
        Assert.True(reconciler.Set(DesiredStateReader.ReadFiles([path])).Succeeded);
        var pid = _manager.Get("ds-mem").Pid;

        File.WriteAllText(path, Manifest(512, 1024));
        var desired = DesiredStateReader.ReadFiles([path]);
        Assert.Equal([ReconcileActionKind.UpdateLive], reconciler.Plan(desired).Actions.Select(a => a.Kind));
        var result = reconciler.Set(desired);
        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Equal(pid, _manager.Get("ds-mem").Pid);
        Assert.Equal(512 * MiB, FromVmm("ds-mem").RequestedBytes);
        Assert.True(reconciler.Plan(desired).IsEmpty);

        File.WriteAllText(path, Manifest(512, 2048));
        Assert.Equal([ReconcileActionKind.UpdateNeedsRestart], reconciler.Plan(DesiredStateReader.ReadFiles([path])).Actions.Select(a => a.Kind));
    }

    [Fact]
    public void After_a_vcpu_removal_the_vm_shows_the_vcpus_present()
    {
        _manager.New(TestDefinitions.Minimal("cpus") with { Memory = MemorySettings.Fixed(64 * MiB), Vcpus = new VcpuSettings(4, 4) });
        var pid = _manager.Start("cpus").Pid;
        LifecycleSandbox.WaitForSerial(_sandbox.Store.SerialLogPath("cpus"), "ready", 30);

        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(_manager.SetVcpu("cpus", 2).Changes).Application);

        // The guest ejects in its own time; until then the VMM still counts the CPUs being removed.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (_manager.Get("cpus").Live!.Vcpus != 2 && DateTime.UtcNow < deadline)
            Thread.Sleep(100);
        var info = _manager.Get("cpus");
        Assert.Equal(2, info.Live!.Vcpus);
        Assert.Equal(pid, info.Pid);
        using var client = VmmClient.Connect(_sandbox.Store.SocketPath("cpus"));
        Assert.Equal(4, client.Status().Vcpus.Count); // the ejected vCPUs are still listed (state Ejected): the count must not use them
    }
}
