using KvmPS.Management.Definitions;

namespace KvmPS.Management.Lifecycle;

/// <summary>How a stop ended, decided once in management so the cmdlet, the CLI and DSC all report the same truth.</summary>
public enum VmStopOutcome
{
    /// <summary>Nothing was running.</summary>
    NotRunning,

    /// <summary>The VM was Saved; turning it off discarded its saved state (as Hyper-V's Stop-VM -TurnOff does).</summary>
    SavedStateDiscarded,

    /// <summary>The guest powered off by itself after the ACPI power button was pressed.</summary>
    ShutDown,

    /// <summary>Turned off at once, as asked (<c>-TurnOff</c>, <c>--force</c>).</summary>
    TurnedOff,

    /// <summary>The guest has not enabled ACPI power-button events, so a press would be ignored: turned off at once, nothing waited.</summary>
    NoAcpi,

    /// <summary>The VM was paused, so the guest could not act on the power button: turned off at once.</summary>
    Paused,

    /// <summary>The power button was pressed and the graceful timeout really passed: turned off.</summary>
    TimedOut,

    /// <summary>The guest had already ended (powered off, crashed) and only the VMM was left to stop.</summary>
    AlreadyEnded,

    /// <summary>
    /// kvmps-vmm did not answer its control socket (for the whole graceful timeout, or at all when forced), or refused
    /// the stop; it was stopped by signal.
    /// </summary>
    Unresponsive,

    /// <summary>The VMM had died without stopping the VM (killed, or crashed itself); only its leftover files were cleared.</summary>
    VmmDied,
}

/// <param name="PreviousState">State before the stop; <see cref="VmState.Off"/> means there was nothing to stop.</param>
/// <param name="Outcome">What happened (see <see cref="Message"/> for the sentence to show).</param>
/// <param name="GracefulTimeout">The graceful timeout that applied (zero when turned off at once by request).</param>
/// <param name="Waited">How long the guest was waited for after the power button (zero if the button was not pressed).</param>
/// <param name="Killed">The VMM did not exit when asked and was killed (SIGKILL).</param>
public sealed record VmStopResult(string Name, VmState PreviousState, VmStopOutcome Outcome, TimeSpan GracefulTimeout, TimeSpan Waited, bool Killed)
{
    /// <summary>More about the outcome: for <see cref="VmStopOutcome.VmmDied"/>, how the VMM was found.</summary>
    public string? Detail { get; init; }

    public bool WasRunning => PreviousState is not VmState.Off;

    /// <summary>The VM was stopped by force (requested, or the guest did not or could not power off itself).</summary>
    public bool Forced => Outcome is not (VmStopOutcome.ShutDown or VmStopOutcome.NotRunning or VmStopOutcome.VmmDied) || Killed;

    /// <summary>The ACPI power button was pressed (the guest had enabled it).</summary>
    public bool PowerButtonPressed => Outcome is VmStopOutcome.ShutDown or VmStopOutcome.TimedOut;

    /// <summary>A graceful stop was asked for and did not happen as a graceful stop: worth a warning.</summary>
    public bool IsWarning => Killed || Outcome is VmStopOutcome.NoAcpi or VmStopOutcome.Paused or VmStopOutcome.TimedOut or VmStopOutcome.Unresponsive or VmStopOutcome.VmmDied;

    /// <summary>One sentence saying what happened, naming the VM; the same for every front end.</summary>
    public string Message
    {
        get
        {
            var text = Outcome switch
            {
                VmStopOutcome.NotRunning => $"VM '{Name}' was not running.",
                VmStopOutcome.SavedStateDiscarded => $"VM '{Name}' was saved; its saved state was discarded and it is off.",
                VmStopOutcome.ShutDown => $"VM '{Name}' shut down: the guest powered off {Seconds(Waited)} after the ACPI power button.",
                VmStopOutcome.TurnedOff => $"VM '{Name}' was turned off.",
                VmStopOutcome.NoAcpi => $"VM '{Name}': the guest does not handle ACPI power-button requests; it was turned off.",
                VmStopOutcome.Paused => $"VM '{Name}' was paused, so the guest could not shut down; it was turned off.",
                VmStopOutcome.TimedOut => $"VM '{Name}' did not shut down within {Seconds(Waited)} of the ACPI power button (timeout {Seconds(GracefulTimeout)}); it was turned off.",
                VmStopOutcome.AlreadyEnded => $"VM '{Name}' had already ended; its VMM was stopped.",
                VmStopOutcome.VmmDied => $"VM '{Name}' was not stopped cleanly: its kvmps-vmm had died (killed or crashed{(Detail is null ? "" : ": " + Detail)}); its leftover files were cleared and it is off.",
                _ when Waited > TimeSpan.Zero => $"VM '{Name}': kvmps-vmm did not answer its control socket for {Seconds(Waited)} (graceful timeout {Seconds(GracefulTimeout)}); it was stopped by signal.",
                _ => $"VM '{Name}': kvmps-vmm did not answer its control socket; it was stopped by signal.",
            };
            return Killed ? text + " kvmps-vmm did not exit when asked and was killed." : text;
        }
    }

    private static string Seconds(TimeSpan t) =>
        t.TotalSeconds.ToString(t.TotalSeconds < 10 ? "0.##" : "0", System.Globalization.CultureInfo.InvariantCulture) + " s";
}

/// <param name="WasRunning">A VMM had to be stopped (forcibly) first.</param>
/// <param name="RetainedDisksDirectory">Where the disk directory was moved when disks were kept; null if deleted.</param>
public sealed record VmRemoveResult(string Name, bool WasRunning, string? RetainedDisksDirectory)
{
    /// <summary>The checkpoints' internal qcow2 snapshots deleted from disks that stay (outside the store, or kept).</summary>
    public IReadOnlyList<KvmPS.Management.Snapshots.DiskSnapshotRef> RemovedDiskSnapshots { get; init; } = [];
}

/// <summary>How a changed property takes effect.</summary>
public enum ChangeApplication
{
    /// <summary>Stored; the VM is not running, so it takes effect at the next start (or needs no VMM at all, like Notes).</summary>
    Stored,

    /// <summary>Stored and applied to the running VM.</summary>
    AppliedLive,

    /// <summary>Stored, but the running VM keeps the old value until it is restarted.</summary>
    RestartNeeded,
}

/// <summary>One changed definition property, by schema name (<c>VcpuCount</c>, <c>MemoryStartupBytes</c>, <c>Disks</c>).</summary>
public sealed record PropertyChange(string Property, string? OldValue, string? NewValue, ChangeApplication Application);

/// <summary>Outcome of <see cref="VmManager.Update"/> and the Set* operations.</summary>
public sealed record ChangeResult(VmDefinition Before, VmDefinition After, VmState State, IReadOnlyList<PropertyChange> Changes)
{
    public string Name => After.Name;
    public bool Changed => Changes.Count > 0;

    /// <summary>Some change was applied to the running VM.</summary>
    public bool AppliedLive => Changes.Any(c => c.Application == ChangeApplication.AppliedLive);

    /// <summary>Some change only takes effect after the VM is restarted.</summary>
    public bool RestartNeeded => Changes.Any(c => c.Application == ChangeApplication.RestartNeeded);
}

public enum AutostartOutcome
{
    Started,
    AlreadyRunning,
    Failed,
}

/// <summary>What <see cref="VmManager.Autostart"/> brought up, in that order: pools, then networks, then VMs.</summary>
public enum AutostartResourceKind
{
    Pool,
    Network,
    Vm,
}

/// <param name="Info">The VM after the attempt (null if it could not even be read, and for pools and networks).</param>
/// <param name="Error">Why it failed, for <see cref="AutostartOutcome.Failed"/>.</param>
/// <param name="Kind">A pool's <see cref="AutostartOutcome.Started"/> means its missing folder was re-created, and
/// <see cref="AutostartOutcome.AlreadyRunning"/> that it was there; a network's, that it was started or already active.</param>
public sealed record AutostartResult(string Name, AutostartOutcome Outcome, VmInfo? Info, Exception? Error, AutostartResourceKind Kind = AutostartResourceKind.Vm);

/// <summary>
/// SEAM (to be implemented with KvmPS.Storage by the lead): creates a new disk image for
/// <see cref="VmManager.New"/>. Called only for disks with <see cref="DiskDefinition.SizeBytes"/> set.
/// Must refuse to overwrite an existing file. Without a creator, New fails for such disks (nothing is created).
/// </summary>
public interface IDiskImageCreator
{
    /// <param name="progress">Reports with <see cref="OperationProgress.PercentComplete"/> of this one image.</param>
    void CreateImage(DiskImageRequest request, IProgress<OperationProgress>? progress);
}

/// <param name="Index">Position in <see cref="VmDefinition.Disks"/>.</param>
/// <param name="Path">Absolute image path (relative definition paths resolved in the VM's disk directory).</param>
/// <param name="BackingImagePath">Absolute backing image path for qcow2, if any.</param>
public sealed record DiskImageRequest(string VmName, int Index, DiskDefinition Disk, string Path, string? BackingImagePath);
