using System.Diagnostics;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// A graceful stop reports what really happened. Regression: a 5 s graceful stop of the built-in guest (which never
/// enables ACPI) and of a paused VM returned after milliseconds saying the VM "did not shut down in time".
/// </summary>
[Collection(VmmCollection.Name)]
public sealed class VmStopTruthTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly VmManager _manager;

    public VmStopTruthTests(VmmFixture fixture)
    {
        _sandbox = new LifecycleSandbox(fixture);
        _manager = _sandbox.Manager;
    }

    public void Dispose() => _sandbox.Dispose();

    private void StartBuiltInGuest(string name, string? cmdline = null)
    {
        _manager.New(TestDefinitions.Minimal(name) with { Boot = new DefaultGuestBoot(cmdline) });
        _manager.Start(name);
        LifecycleSandbox.WaitForSerial(_manager.Get(name).SerialLogPath, "ready");
    }

    [Fact]
    public void The_built_in_guest_shuts_down_through_the_power_button()
    {
        StartBuiltInGuest("acpi");
        var result = _manager.Stop("acpi", TimeSpan.FromSeconds(20));
        Assert.Equal(VmStopOutcome.ShutDown, result.Outcome);
        Assert.False(result.Forced);
        Assert.True(result.PowerButtonPressed);
        Assert.False(result.IsWarning);
        Assert.Contains("acpi: power button", File.ReadAllText(_manager.Get("acpi").SerialLogPath));
        Assert.Equal(VmState.Off, _manager.Get("acpi").State);
    }

    [Fact]
    public void A_guest_without_acpi_is_turned_off_at_once_and_the_message_says_why()
    {
        // kvmps.nosci: the built-in guest ignores ACPI events, like an OS without ACPI support.
        StartBuiltInGuest("noacpi", "kvmps.nosci");
        using (var client = VmmClient.Connect(_sandbox.Store.SocketPath("noacpi"), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2)))
            Assert.NotEqual(true, client.Status().AcpiPowerButton);

        var clock = Stopwatch.StartNew();
        var result = _manager.Stop("noacpi", TimeSpan.FromSeconds(5));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"nothing should wait for a guest that ignores the button (took {clock.Elapsed})");

        Assert.Equal(VmStopOutcome.NoAcpi, result.Outcome);
        Assert.Equal(TimeSpan.Zero, result.Waited);
        Assert.True(result.Forced);
        Assert.False(result.PowerButtonPressed);
        Assert.True(result.IsWarning);
        Assert.Equal("VM 'noacpi': the guest does not handle ACPI power-button requests; it was turned off.", result.Message);
        Assert.DoesNotContain("in time", result.Message);
        Assert.Equal(VmState.Off, _manager.Get("noacpi").State);
    }

    [Fact]
    public void A_paused_vm_is_reported_as_paused_not_as_timed_out()
    {
        StartBuiltInGuest("sleepy");
        _manager.Suspend("sleepy");

        var result = _manager.Stop("sleepy", TimeSpan.FromSeconds(5));

        Assert.Equal(VmState.Paused, result.PreviousState);
        Assert.Equal(VmStopOutcome.Paused, result.Outcome);
        Assert.Equal("VM 'sleepy' was paused, so the guest could not shut down; it was turned off.", result.Message);
        Assert.True(result.IsWarning);
        Assert.Equal(VmState.Off, _manager.Get("sleepy").State);
    }

    [Fact]
    public void Turning_off_is_no_warning_and_stopping_an_off_vm_says_it_was_not_running()
    {
        StartBuiltInGuest("plug");
        var result = _manager.Stop("plug", force: true);
        Assert.Equal(VmStopOutcome.TurnedOff, result.Outcome);
        Assert.False(result.IsWarning);
        Assert.Equal("VM 'plug' was turned off.", result.Message);

        var again = _manager.Stop("plug");
        Assert.Equal(VmStopOutcome.NotRunning, again.Outcome);
        Assert.False(again.WasRunning);
        Assert.Equal("VM 'plug' was not running.", again.Message);
    }

    [Fact]
    public void A_real_timeout_names_the_time_that_passed()
    {
        var result = new VmStopResult("slow", VmState.Running, VmStopOutcome.TimedOut, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(5004), false);
        Assert.Equal("VM 'slow' did not shut down within 5 s of the ACPI power button (timeout 5 s); it was turned off.", result.Message);
        Assert.True(result.PowerButtonPressed);
        Assert.True(result.IsWarning);

        var shutDown = new VmStopResult("fine", VmState.Running, VmStopOutcome.ShutDown, TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(1250), false);
        Assert.Equal("VM 'fine' shut down: the guest powered off 1.25 s after the ACPI power button.", shutDown.Message);
        Assert.False(shutDown.Forced);
        Assert.False(shutDown.IsWarning);

        var killed = result with { Outcome = VmStopOutcome.Unresponsive, Killed = true };
        Assert.EndsWith("it was stopped by signal. kvmps-vmm did not exit when asked and was killed.", killed.Message);
    }

    [Theory]
    // The engine's own outcome wins.
    [InlineData("PoweredOff", false, true, VmState.Running, false, VmStopOutcome.ShutDown)]
    [InlineData("TimedOut", true, true, VmState.Running, false, VmStopOutcome.TimedOut)]
    [InlineData("NoAcpi", true, false, VmState.Running, false, VmStopOutcome.NoAcpi)]
    [InlineData("Paused", true, false, VmState.Paused, false, VmStopOutcome.Paused)]
    [InlineData("Forced", true, false, VmState.Running, true, VmStopOutcome.TurnedOff)]
    [InlineData("NotRunning", false, false, VmState.Crashed, false, VmStopOutcome.AlreadyEnded)]
    // A VMM without the field: judged from forced/power_button and the state before.
    [InlineData(null, true, false, VmState.Running, false, VmStopOutcome.NoAcpi)]
    [InlineData(null, true, false, VmState.Paused, false, VmStopOutcome.Paused)]
    [InlineData(null, true, true, VmState.Running, false, VmStopOutcome.TimedOut)]
    [InlineData(null, false, true, VmState.Running, false, VmStopOutcome.ShutDown)]
    [InlineData(null, true, false, VmState.Running, true, VmStopOutcome.TurnedOff)]
    [InlineData(null, false, false, VmState.Crashed, false, VmStopOutcome.AlreadyEnded)]
    public void The_outcome_comes_from_the_vmm_reply(string? outcome, bool forced, bool pressed, VmState before, bool force, VmStopOutcome expected) =>
        Assert.Equal(expected, VmManager.StopOutcome(new VmmStopResult(forced, pressed, "Stopped", outcome), before, force));
}
