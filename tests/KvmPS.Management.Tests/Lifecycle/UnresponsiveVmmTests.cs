using System.Diagnostics;
using System.Net.Sockets;
using KvmPS.Interop;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// Never hard-kill a healthy guest by mistake (issue 17): a stalled or busy VMM is reported Unresponsive, a stop goes
/// graceful first, apply leaves a VMM it cannot reach alone, and a VMM that was killed is reported as such.
/// </summary>
[Collection(VmmCollection.Name)]
public sealed class UnresponsiveVmmTests : IDisposable
{
    private const int SIGSTOP = 19, SIGCONT = 18;
    private readonly LifecycleSandbox _sandbox;
    private readonly VmManager _manager;
    private readonly TempDirectory _dir = new();
    private readonly List<int> _stopped = new();

    public UnresponsiveVmmTests(VmmFixture fixture)
    {
        _sandbox = new LifecycleSandbox(fixture);
        _manager = _sandbox.Manager;
    }

    public void Dispose()
    {
        foreach (var pid in _stopped)
            ProcessInterop.Kill(pid, SIGCONT);
        _sandbox.Dispose();
        _dir.Dispose();
    }

    private int StartBuiltInGuest(string name)
    {
        _manager.New(TestDefinitions.Minimal(name) with { Boot = new DefaultGuestBoot(null) });
        var info = _manager.Start(name);
        LifecycleSandbox.WaitForSerial(info.SerialLogPath, "ready");
        return info.Pid!.Value;
    }

    private void Stall(int pid)
    {
        _stopped.Add(pid);
        ProcessInterop.Kill(pid, SIGSTOP);
    }

    private DesiredHostState Manifest(string name, string state)
    {
        var path = Path.Combine(_dir.Path, "host.psd1");
        File.WriteAllText(path, $$"""@{ VirtualMachines = @( @{ Name = '{{name}}'; MemoryStartupBytes = 256MB; State = '{{state}}' } ) }""");
        return DesiredStateReader.ReadFiles(new[] { path });
    }

    [Fact]
    public void A_vmm_stalled_by_SIGSTOP_is_Unresponsive_and_apply_leaves_it_alone()
    {
        var pid = StartBuiltInGuest("stall");
        Stall(pid);
        var clock = Stopwatch.StartNew();

        var info = _manager.Get("stall");
        Assert.Equal(VmState.Unresponsive, info.State);
        Assert.True(info.IsActive);
        Assert.Equal(pid, info.Pid);
        Assert.Contains("did not answer its control socket within 2", info.StateReason);
        Assert.Contains("stopped", info.StateReason);

        // Wanted Running (it is, really) and wanted Off: neither plans a step for it; both report the drift.
        var reconciler = new Reconciler(_manager);
        foreach (var state in new[] { "Running", "Off" })
        {
            var result = reconciler.Set(Manifest("stall", state));
            Assert.Empty(result.Plan.Actions);
            Assert.Contains(result.Plan.Drifts, d => d.Property == "State" && d.Actual == "Unresponsive");
            Assert.Contains(result.Plan.Warnings, w => w.Contains("left alone", StringComparison.Ordinal));
        }
        Assert.True(ProcessInterop.IsRunning(pid), "apply killed the stalled VMM");

        // Stalled for 3 s, then it goes on: the same VMM, running.
        Thread.Sleep(TimeSpan.FromSeconds(3) - clock.Elapsed is { Ticks: > 0 } rest ? rest : TimeSpan.Zero);
        ProcessInterop.Kill(pid, SIGCONT);
        var after = LifecycleSandbox.WaitFor(() => _manager.Get("stall"), v => v.State == VmState.Running, "running again");
        Assert.Equal(pid, after.Pid);
        Assert.Empty(reconciler.Plan(Manifest("stall", "Running")).Drifts);
    }

    [Fact]
    public void A_stop_of_a_briefly_stalled_vmm_still_goes_through_the_power_button()
    {
        var pid = StartBuiltInGuest("brief");
        Stall(pid);
        using var resume = new Timer(_ => ProcessInterop.Kill(pid, SIGCONT), null, TimeSpan.FromSeconds(2.5), Timeout.InfiniteTimeSpan);

        var result = _manager.Stop("brief", TimeSpan.FromSeconds(20));

        Assert.Equal(VmState.Unresponsive, result.PreviousState);
        Assert.Equal(VmStopOutcome.ShutDown, result.Outcome);
        Assert.False(result.Forced);
        Assert.Contains("acpi: power button", File.ReadAllText(_manager.Get("brief").SerialLogPath));
        Assert.Equal(VmState.Off, _manager.Get("brief").State);
    }

    [Fact]
    public void A_stop_of_a_vmm_that_stays_stalled_forces_only_after_the_graceful_timeout()
    {
        var pid = StartBuiltInGuest("stuck");
        Stall(pid);
        var clock = Stopwatch.StartNew();

        var result = _manager.Stop("stuck", TimeSpan.FromSeconds(3));

        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(3), $"forced after {clock.Elapsed}, before the graceful timeout");
        Assert.Equal(VmStopOutcome.Unresponsive, result.Outcome);
        Assert.True(result.Forced);
        Assert.Contains("did not answer its control socket for", result.Message);
        // Its exit (releasing guest memory) may still be finishing as the stop returns.
        Assert.True(SpinWait.SpinUntil(() => !ProcessInterop.IsRunning(pid), TimeSpan.FromSeconds(10)), "the stuck VMM is still running");
        Assert.Equal(VmState.Off, _manager.Get("stuck").State);
    }

    [Fact]
    public void Thirty_two_idle_clients_on_the_socket_do_not_stop_a_graceful_stop()
    {
        StartBuiltInGuest("crowd");
        var socketPath = _sandbox.Store.SocketPath("crowd");
        var idle = new List<Socket>();
        try
        {
            for (var i = 0; i < 32; i++)
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                s.Connect(new UnixDomainSocketEndPoint(socketPath));
                idle.Add(s);
            }
            Thread.Sleep(200); // every one accepted and waiting for a request

            Assert.Equal(VmState.Running, _manager.Get("crowd").State);
            var result = _manager.Stop("crowd", TimeSpan.FromSeconds(20));

            Assert.Equal(VmStopOutcome.ShutDown, result.Outcome);
            Assert.False(result.Forced);
            Assert.Equal(VmState.Off, _manager.Get("crowd").State);
        }
        finally
        {
            foreach (var s in idle)
                s.Dispose();
        }
    }

    [Fact]
    public void A_killed_vmm_is_reported_as_killed_not_as_stopped()
    {
        var pid = StartBuiltInGuest("killed");
        ProcessInterop.Kill(pid, ProcessInterop.SIGKILL);
        LifecycleSandbox.WaitFor(() => _manager.Get("killed"), v => v.State == VmState.Crashed, "crashed");

        var result = new Reconciler(_manager).Set(Manifest("killed", "Off"));

        var stop = Assert.Single(result.Results);
        Assert.Equal(ReconcileActionStatus.Done, stop.Status);
        Assert.Contains("killed or crashed", stop.Message);
        Assert.Contains($"VMM process {pid} died unexpectedly", stop.Message);
        Assert.DoesNotContain("not running", stop.Message);
        Assert.DoesNotContain("powered off", stop.Message);
        Assert.Equal(VmState.Off, _manager.Get("killed").State);
    }
}
