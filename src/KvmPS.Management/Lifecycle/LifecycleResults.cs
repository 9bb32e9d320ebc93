using KvmPS.Management.Definitions;

namespace KvmPS.Management.Lifecycle;

/// <summary>Progress of a long operation (New creating disks, Start waiting for the VMM), for Write-Progress and the CLI.</summary>
/// <param name="PercentComplete">0–100, or -1 if unknown.</param>
public sealed record VmProgress(string VmName, string Activity, string Status, int PercentComplete = -1);

/// <param name="PreviousState">State before the stop; <see cref="VmState.Off"/> means there was nothing to stop.</param>
/// <param name="Forced">The VM was stopped by force (requested, or the guest did not power off within the graceful timeout).</param>
/// <param name="PowerButtonPressed">The ACPI power button was pressed (the guest had enabled it).</param>
/// <param name="Killed">The VMM did not stop over its control socket and was killed (SIGKILL).</param>
public sealed record VmStopResult(string Name, VmState PreviousState, bool Forced, bool PowerButtonPressed, bool Killed)
{
    public bool WasRunning => PreviousState is not VmState.Off;
}

/// <param name="WasRunning">A VMM had to be stopped (forcibly) first.</param>
/// <param name="RetainedDisksDirectory">Where the disk directory was moved when disks were kept; null if deleted.</param>
public sealed record VmRemoveResult(string Name, bool WasRunning, string? RetainedDisksDirectory);

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

/// <param name="Info">The VM after the attempt (null if it could not even be read).</param>
/// <param name="Error">Why it failed, for <see cref="AutostartOutcome.Failed"/>.</param>
public sealed record AutostartResult(string Name, AutostartOutcome Outcome, VmInfo? Info, Exception? Error);

/// <summary>
/// SEAM (to be implemented with KvmPS.Storage by the lead): creates a new disk image for
/// <see cref="VmManager.New"/>. Called only for disks with <see cref="DiskDefinition.SizeBytes"/> set.
/// Must refuse to overwrite an existing file. Without a creator, New fails for such disks (nothing is created).
/// </summary>
public interface IDiskImageCreator
{
    void CreateImage(DiskImageRequest request, IProgress<double>? progress);
}

/// <param name="Index">Position in <see cref="VmDefinition.Disks"/>.</param>
/// <param name="Path">Absolute image path (relative definition paths resolved in the VM's disk directory).</param>
/// <param name="BackingImagePath">Absolute backing image path for qcow2, if any.</param>
public sealed record DiskImageRequest(string VmName, int Index, DiskDefinition Disk, string Path, string? BackingImagePath);
