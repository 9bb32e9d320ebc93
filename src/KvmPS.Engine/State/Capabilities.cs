namespace KvmPS.State;

/// <summary>
/// A part of the machine that can be stopped completely: after <see cref="Pause"/> returns, none of its threads,
/// timers or callbacks touches guest memory, raises an interrupt or changes its state until <see cref="Resume"/>.
/// Snapshot, migration and hot-plug rely on that: they read or change state only while everything is quiescent.
/// </summary>
public interface IPausable
{
    /// <summary>Stops every activity and returns once the part is quiescent (in-flight I/O completed). Idempotent.</summary>
    void Pause();
    /// <summary>Lets the part run again. Idempotent; a part that was never paused ignores it.</summary>
    void Resume();
}

/// <summary>
/// A part of the machine whose state can be saved and restored (Firecracker's per-device <c>persist</c>,
/// Cloud Hypervisor's <c>Snapshottable</c>). Save is called only while the machine is paused; restore is called on a
/// part built from the same configuration, before any vCPU runs, and must have no guest-visible side effect
/// (no interrupt, no write to guest memory) beyond putting the state back.
/// </summary>
public interface IPersistent
{
    /// <summary>The record's name in the snapshot, unique within the machine and stable across versions ("serial0", "pci/00:03.0").</summary>
    string StateName { get; }
    /// <summary>The record version this build writes; restore accepts it and every older version it still knows.</summary>
    ushort StateVersion { get; }
    void SaveState(StateWriter writer);
    /// <summary>Restores a record of <paramref name="version"/>; throws <see cref="StateFormatException"/> for anything it cannot accept.</summary>
    void RestoreState(StateReader reader, ushort version);
}
