using System.Management.Automation;
using KvmPS.Management.Snapshots;

namespace KvmPS.PowerShell;

/// <summary>
/// A checkpoint of a VM as the cmdlets show it (Hyper-V's VMSnapshot). Piped into Restore-KvmVmSnapshot and
/// Remove-KvmVmSnapshot it selects the checkpoint; its VMName and Name also bind by property name.
/// </summary>
public sealed class KvmVmSnapshot
{
    public KvmVmSnapshot(VmSnapshot snapshot, string? parentName)
    {
        Snapshot = snapshot ?? throw new ArgumentNullException(nameof(snapshot));
        ParentSnapshotName = parentName;
    }

    /// <summary>The management layer's record.</summary>
    [Hidden]
    public VmSnapshot Snapshot { get; }

    public string VMName => Snapshot.VmName;
    public string Name => Snapshot.Name;
    public string Id => Snapshot.Id;

    /// <summary>Local time, as Hyper-V shows it.</summary>
    public DateTime CreationTime => Snapshot.CreationTimeUtc.ToLocalTime();

    public DateTime CreationTimeUtc => Snapshot.CreationTimeUtc;
    public string? ParentSnapshotId => Snapshot.ParentId;
    public string? ParentSnapshotName { get; }

    /// <summary>Standard: memory and device state included (the VM resumes where it was); DiskOnly: taken while the VM was off.</summary>
    public string SnapshotType => Snapshot.IncludesMemory ? "Standard" : "DiskOnly";

    public bool IncludesMemory => Snapshot.IncludesMemory;

    /// <summary>Its memory holds only the pages changed since its parent's (Checkpoint-KvmVm -Incremental): the parent cannot be removed while it stays.</summary>
    public bool IsIncremental => IncrementalChain.IsIncremental(Snapshot);

    /// <summary>The VM's state when the checkpoint was taken.</summary>
    public string State => Snapshot.VmState;

    public long SizeBytes => Snapshot.SizeBytes;
    public string[] DiskSnapshots => Snapshot.DiskSnapshots.Select(d => d.Path).ToArray();
    public string Path => Snapshot.Directory;

    public override string ToString() => Name;
}
