using KvmPS.Contract;

namespace KvmPS.Management.Vmm;

// Management's views of some replies (typed state, TimeSpan durations). The wire records themselves live in
// KvmPS.Contract (ControlReplies.cs); describe and metrics are returned as those records unchanged.

/// <summary>The VM state kvmps-vmm reports (<c>status.state</c>).</summary>
public enum VmmState
{
    /// <summary>A state this client does not know (newer VMM); see <see cref="VmmStatus.StateText"/>.</summary>
    Unknown,
    Created,
    Running,
    Paused,
    Stopped,
    Crashed,
}

public sealed record VmmVcpuState(int Id, string State);

/// <summary>How the VM ended (<c>status.exit</c>); present once it has.</summary>
/// <param name="Kind"><c>PowerOff</c>, <c>Reset</c>, <c>DebugExit</c>, <c>Stopped</c> or <c>Crashed</c>.</param>
/// <param name="Registers">On a crash: the failing vCPU's registers as the VMM formats them (hex strings), and <c>vcpu</c>.</param>
public sealed record VmmExitInfo(string Kind, string? Reason, int? DebugExitValue, IReadOnlyDictionary<string, string>? Registers);

/// <summary>Reply to <c>status</c> (also returned by <c>pause</c>/<c>resume</c>).</summary>
/// <param name="AcpiPowerButton">
/// The guest handles ACPI power-button requests (it enabled ACPI and the power-button event), so a graceful stop
/// can work; null from a VMM older than the field.
/// </param>
public sealed record VmmStatus(
    VmmState State,
    string StateText,
    int Boots,
    TimeSpan Uptime,
    bool NestedPvm,
    IReadOnlyList<VmmVcpuState> Vcpus,
    VmmExitInfo? Exit,
    bool? AcpiPowerButton = null)
{
    internal static VmmStatus From(StatusReply reply)
    {
        var state = Enum.TryParse<VmmState>(reply.State, ignoreCase: false, out var s) && s != VmmState.Unknown ? s : VmmState.Unknown;
        VmmExitInfo? exit = reply.Exit is { } e
            ? new VmmExitInfo(e.Kind, e.Reason, e.DebugExitValue,
                e.Registers?.ByName().ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal))
            : null;
        return new VmmStatus(
            state,
            reply.State,
            reply.Boots,
            TimeSpan.FromMilliseconds(reply.UptimeMs),
            reply.NestedPvm,
            [.. reply.Vcpus.Select(v => new VmmVcpuState(v.Id, v.State))],
            exit,
            reply.AcpiPowerButton);
    }
}

/// <summary>Reply to <c>stop</c>. The VMM process exits right after sending it.</summary>
/// <param name="Forced">The guest did not power off by itself (in time); the VM was stopped by force.</param>
/// <param name="PowerButtonPressed">The ACPI power button was pressed (the guest had enabled it).</param>
/// <param name="State">The VM state when stopping finished.</param>
/// <param name="Outcome">
/// Why it ended so (one of <see cref="StopOutcomes"/>; docs/vmm.md); null from a VMM older than the field.
/// </param>
/// <param name="Waited">How long the VMM waited for the guest after pressing the power button.</param>
public sealed record VmmStopResult(bool Forced, bool PowerButtonPressed, string State, string? Outcome = null, TimeSpan Waited = default)
{
    internal static VmmStopResult From(StopReply reply) =>
        new(reply.Forced, reply.PowerButton, reply.State, reply.Outcome, TimeSpan.FromMilliseconds(reply.WaitedMs));
}
