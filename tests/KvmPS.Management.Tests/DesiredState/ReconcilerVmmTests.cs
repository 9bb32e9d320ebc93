using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.DesiredState;

/// <summary>Set against real kvmps-vmm processes booting the built-in guest.</summary>
[Collection(VmmCollection.Name)]
public sealed class ReconcilerVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly TempDirectory _dir = new();

    public ReconcilerVmmTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose()
    {
        _sandbox.Dispose();
        _dir.Dispose();
    }

    private DesiredHostState Write(string text)
    {
        var path = Path.Combine(_dir.Path, "host.psd1");
        File.WriteAllText(path, text);
        return DesiredStateReader.ReadFiles(new[] { path });
    }

    private static string Manifest(string middleBoot) => $$"""
        @{
          Defaults = @{ MemoryStartupBytes = 64MB; State = 'Running' }
          VirtualMachines = @(
            @{ Name = 'ds-a'; VcpuCount = 2 }
            @{ Name = 'ds-b'; Boot = @{ KernelPath = '{{middleBoot}}' } }
            @{ Name = 'ds-c'; Notes = 'third' }
          )
        }
        """;

    [Fact]
    public void Failure_halfway_leaves_a_consistent_store_and_a_rerun_finishes()
    {
        var reconciler = new Reconciler(_sandbox.Manager);
        var reported = new List<string>();
        var reports = new List<OperationProgress>();
        var progress = new SynchronousProgress(p =>
        {
            reports.Add(p);
            reported.Add($"{p.Stage}:{p.Step}/{p.StepCount}:{p.VmName}");
        });

        // 1. The middle VM's kernel does not exist: its start fails; ds-c's start is not attempted.
        var missingKernel = Path.Combine(_dir.Path, "no-such-vmlinux");
        var first = reconciler.Set(Write(Manifest(missingKernel)), progress);
        Assert.False(first.Succeeded);
        Assert.Equal("Start:ds-b", $"{first.Failure!.Action.Kind}:{first.Failure.Action.VmName}");
        Assert.IsType<VmmLaunchException>(first.Failure.Error);
        Assert.Equal(new[] { "Done", "Done", "Done", "Done", "Failed", "NotRun" }, first.Results.Select(r => r.Status.ToString()));
        // Reported synchronously, in order: each step started then done, the failed one last and completing the run.
        Assert.Equal("StepStarted:1/6:ds-a", reported[0]);
        Assert.Equal("StepFailed:5/6:ds-b", reported[^1]);
        Assert.Equal(10, reports.Count);
        Assert.True(reports[^1].Completed);
        Assert.All(reports.SkipLast(1), r => Assert.False(r.Completed));
        Assert.Equal(reports.Select(r => r.PercentComplete).Order(), reports.Select(r => r.PercentComplete));
        Assert.Equal(first.Failure.Message, reports[^1].Status);
        Assert.DoesNotContain(reported, r => r.Contains(":6/6:", StringComparison.Ordinal));

        // The store is consistent: all three stored, ds-a running, the others off, one VMM process.
        var vms = _sandbox.Manager.List().ToDictionary(v => v.Name);
        Assert.Equal(new[] { "ds-a", "ds-b", "ds-c" }, vms.Keys.Order());
        Assert.Equal(VmState.Running, vms["ds-a"].State);
        Assert.Equal(VmState.Off, vms["ds-b"].State);
        Assert.Equal(VmState.Off, vms["ds-c"].State);
        Assert.Single(_sandbox.VmmProcesses());
        Assert.False(reconciler.Plan(Write(Manifest(missingKernel))).InDesiredState);

        // 2. Fix the manifest (a kernel that exists: the built-in guest's ELF) and run again: it continues.
        var fixedState = Write(Manifest(_sandbox.Fixture.GuestElfPath));
        var plan = reconciler.Plan(fixedState);
        Assert.Equal("Update:ds-b Start:ds-b Start:ds-c", string.Join(" ", plan.Actions.Select(a => $"{a.Kind}:{a.VmName}")));
        var second = reconciler.Set(fixedState);
        Assert.True(second.Succeeded, second.Failure?.Message);
        Assert.All(_sandbox.Manager.List(), vm => Assert.Equal(VmState.Running, vm.State));
        Assert.Equal(3, _sandbox.VmmProcesses().Count);

        // 3. Idempotent: nothing left to do, Test is clean.
        Assert.True(reconciler.Plan(fixedState).IsEmpty);
        var third = reconciler.Set(fixedState);
        Assert.Empty(third.Results);
        Assert.Empty(reconciler.Test(fixedState));
        var status = reconciler.Get(fixedState);
        Assert.True(status.InDesiredState);
        Assert.Empty(status.Unmanaged);
    }

    [Fact]
    public void Transitions_on_real_vms_and_a_second_apply_does_nothing()
    {
        var reconciler = new Reconciler(_sandbox.Manager);
        _sandbox.Manager.New(TestDefinitions.Minimal("ds-stray"));
        var up = Write("""
            @{ Defaults = @{ MemoryStartupBytes = 64MB }
               VirtualMachines = @( @{ Name = 'ds-run'; State = 'Running' }, @{ Name = 'ds-pause'; State = 'Paused' }, @{ Name = 'ds-off'; State = 'Off' } ) }
            """);
        Assert.True(reconciler.Set(up).Succeeded);
        var states = _sandbox.Manager.List().ToDictionary(v => v.Name, v => v.State);
        Assert.Equal(VmState.Running, states["ds-run"]);
        Assert.Equal(VmState.Paused, states["ds-pause"]);
        Assert.Equal(VmState.Off, states["ds-off"]);
        Assert.True(reconciler.Plan(up).IsEmpty);
        Assert.Equal(new[] { "ds-stray" }, reconciler.Get(up).Unmanaged.Select(v => v.Name));

        // Flip every state, change a vCPU count with RestartIfNeeded, and retire one VM.
        var flipped = Write("""
            @{ Defaults = @{ MemoryStartupBytes = 64MB }
               VirtualMachines = @( @{ Name = 'ds-run'; State = 'Running'; VcpuCount = 2; RestartIfNeeded = $true },
                                    @{ Name = 'ds-pause'; State = 'Running' }, @{ Name = 'ds-off'; Ensure = 'Absent' } ) }
            """);
        var drift = reconciler.Test(flipped);
        Assert.Contains(new Drift("ds-run", "VcpuCount", "2", "1"), drift);
        Assert.Contains(new Drift("ds-pause", "State", "Running", "Paused"), drift);
        Assert.Contains(new Drift("ds-off", "Ensure", "Absent", "Present"), drift);
        var result = reconciler.Set(flipped);
        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Equal("Remove:ds-off Stop:ds-run Update:ds-run Start:ds-run Resume:ds-pause",
            string.Join(" ", result.Results.Select(r => $"{r.Action.Kind}:{r.Action.VmName}")));
        var run = _sandbox.Manager.Get("ds-run");
        Assert.Equal(VmState.Running, run.State);
        Assert.Equal(2, run.Live!.Vcpus);
        Assert.Equal(VmState.Running, _sandbox.Manager.Get("ds-pause").State);
        Assert.Null(_sandbox.Manager.TryGet("ds-off"));
        Assert.True(reconciler.Plan(flipped).IsEmpty);
        Assert.Empty(reconciler.Set(flipped).Results);
    }
}
