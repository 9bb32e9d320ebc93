namespace KvmPS.Management.Snapshots;

/// <summary>An internal qcow2 snapshot taken on one disk as part of a checkpoint.</summary>
/// <param name="Path">The disk image's absolute path when the checkpoint was taken.</param>
/// <param name="SnapshotId">The internal snapshot's id in that image.</param>
public sealed record DiskSnapshotRef(string Path, string SnapshotId);

/// <summary>
/// A checkpoint of a VM, as stored in <c>&lt;vm&gt;/snapshots/&lt;id&gt;/snapshot.json</c> (Hyper-V's VMSnapshot).
/// With memory it also holds the VMM's snapshot directory (<see cref="VmmDirectory"/>); without (a checkpoint of
/// a VM that was off) it is only the disks' internal qcow2 snapshots.
/// </summary>
public sealed record VmSnapshot
{
    public required string VmName { get; init; }
    public required string Name { get; init; }

    /// <summary>Unique within the store; also the id of the disks' internal qcow2 snapshots.</summary>
    public required string Id { get; init; }

    public required DateTime CreationTimeUtc { get; init; }

    /// <summary>The checkpoint the VM was created from or last restored to when this one was taken; null for a root.</summary>
    public string? ParentId { get; init; }

    /// <summary>Bytes of the checkpoint's files on the host (state, memory, configuration; the memory file's apparent size). Disk snapshots are inside the disk images and not counted.</summary>
    public long SizeBytes { get; init; }

    /// <summary>The guest's memory and device state are included: restoring resumes the VM where it was.</summary>
    public bool IncludesMemory { get; init; }

    /// <summary>The VM's state when the checkpoint was taken: Running, Paused or Off.</summary>
    public required string VmState { get; init; }

    public IReadOnlyList<DiskSnapshotRef> DiskSnapshots { get; init; } = Array.Empty<DiskSnapshotRef>();

    /// <summary>The checkpoint's folder in the store (not stored in the metadata; set when read).</summary>
    public string Directory { get; init; } = "";

    /// <summary>The VMM's snapshot directory (state.bin, config.json, memory.bin) when <see cref="IncludesMemory"/>.</summary>
    public string VmmDirectory => Path.Combine(Directory, SnapshotStore.VmmDirectoryName);

    public override string ToString() => Name;
}

/// <summary>The state of a Saved VM (<c>&lt;vm&gt;/saved/</c>): what <c>Save-KvmVm</c> wrote and <c>Start-KvmVm</c> resumes.</summary>
public sealed record VmSavedState
{
    public required string VmName { get; init; }
    public required DateTime CreationTimeUtc { get; init; }
    public long SizeBytes { get; init; }

    /// <summary>Running or Paused: the state the VM resumes into.</summary>
    public required string VmState { get; init; }

    public string Directory { get; init; } = "";
    public string VmmDirectory => Path.Combine(Directory, SnapshotStore.VmmDirectoryName);
}
