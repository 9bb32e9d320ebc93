using System.Globalization;
using KvmPS.Management.Definitions;
using KvmPS.Management.Snapshots;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>Options of <see cref="VmManager.Checkpoint"/>.</summary>
public sealed record CheckpointOptions
{
    /// <summary>
    /// Accept raw disks: the checkpoint is taken without disk snapshots (a raw disk cannot have one), so restoring it
    /// leaves every disk as it is then. Without this a raw disk makes the checkpoint fail (<see cref="RawDiskSnapshotException"/>).
    /// </summary>
    public bool AllowRawDisks { get; init; }

    /// <summary>
    /// Write only the memory changed since the VM's previous checkpoint taken (or restored) by the same run of its VMM
    /// (a diff snapshot, docs/snapshots.md): much smaller and faster for a large guest. The previous checkpoint then
    /// cannot be removed while this one stays. Needs a running or paused VM whose VMM has such a checkpoint
    /// (else <see cref="VmStateException"/> or <see cref="ManagementValidationException"/>, nothing written).
    /// </summary>
    public bool Incremental { get; init; }
}

// Checkpoints (Hyper-V's Checkpoint-VM, Get-VMSnapshot, Restore-VMSnapshot, Remove-VMSnapshot) and Save-VM.
public sealed partial class VmManager
{
    /// <summary>Hyper-V's limit for a checkpoint name.</summary>
    public const int MaximumSnapshotNameLength = 100;

    /// <summary>Internal qcow2 snapshots of closed disks (offline checkpoints, revert, remove); null: not available.</summary>
    public IDiskSnapshots? DiskSnapshots { get; init; }

    private SnapshotStore Snapshots => new(Store);

    /// <summary>Hyper-V's default checkpoint name: "<paramref name="vmName"/> - (date - time)" in the current culture.</summary>
    public static string DefaultSnapshotName(string vmName, DateTime localTime) =>
        $"{vmName} - ({localTime.ToString("d", CultureInfo.CurrentCulture)} - {localTime.ToString("T", CultureInfo.CurrentCulture)})";

    /// <summary>
    /// Takes a checkpoint. A running or paused VM: the VMM writes memory and device state (<c>snapshot.create</c>) and
    /// every qcow2 disk gets an internal snapshot at the same paused instant; the VM goes on. A VM that is off: each
    /// writable qcow2 disk gets an internal snapshot (no memory). A writable raw disk is refused unless
    /// <see cref="CheckpointOptions.AllowRawDisks"/>. A Saved VM, or one starting or stopping → <see cref="VmStateException"/>.
    /// Names are unique per VM (<see cref="SnapshotAlreadyExistsException"/>); null takes Hyper-V's default name.
    /// Nothing is left behind on failure.
    /// </summary>
    public VmSnapshot Checkpoint(string name, string? snapshotName = null, CheckpointOptions? options = null)
    {
        options ??= new CheckpointOptions();
        var snapshots = Snapshots;
        using (Store.Lock())
        {
            var definition = Store.Get(name);
            snapshots.RemoveLeftovers(name);
            var existing = snapshots.List(name);
            snapshotName = snapshotName is null ? UniqueDefaultName(name, existing) : ValidateSnapshotName(name, snapshotName);
            if (existing.Any(s => s.Name == snapshotName))
                throw new SnapshotAlreadyExistsException(name, snapshotName);
            var probe = Probe(name);
            var id = SnapshotStore.NewId();
            var metadata = new VmSnapshot
            {
                VmName = name,
                Name = snapshotName,
                Id = id,
                CreationTimeUtc = DateTime.UtcNow,
                ParentId = snapshots.CurrentId(name),
                VmState = probe.State.ToString(),
            };
            var staging = snapshots.CreateStaging(name, id);
            var createdDiskSnapshots = new List<DiskSnapshotRef>();
            try
            {
                switch (probe.State)
                {
                    case VmState.Running or VmState.Paused:
                        metadata = CheckpointRunning(definition, probe, metadata, staging, options);
                        break;
                    case VmState.Off when options.Incremental:
                        throw new VmStateException(name, probe.State, $"VM '{name}' is off; an incremental checkpoint holds memory, so it needs the VM running or paused");
                    case VmState.Off:
                        metadata = metadata with { DiskSnapshots = createdDiskSnapshots };
                        CheckpointDisks(definition, id, snapshotName, options, createdDiskSnapshots);
                        break;
                    case VmState.Saved:
                        throw new VmStateException(name, probe.State, $"VM '{name}' is saved; start it (Start-KvmVm) before taking a checkpoint");
                    default:
                        throw new VmStateException(name, probe.State, $"VM '{name}' is {Describe(probe.State)}; a checkpoint needs it running, paused or off");
                }
                var committed = snapshots.Commit(staging, metadata, VmDefinitionJson.SerializeToUtf8Bytes(definition));
                snapshots.SetCurrent(name, id);
                return committed;
            }
            catch
            {
                foreach (var disk in createdDiskSnapshots)
                    TryQuietly(() => DiskSnapshots!.Delete(disk.Path, disk.SnapshotId));
                TryQuietly(() => Directory.Delete(staging, recursive: true));
                throw;
            }
        }
    }

    /// <summary>The VM's checkpoints, oldest first.</summary>
    public IReadOnlyList<VmSnapshot> GetSnapshots(string name)
    {
        Store.Get(name);
        return Snapshots.List(name);
    }

    /// <summary>The checkpoint named <paramref name="snapshotName"/>; <see cref="SnapshotNotFoundException"/> if none.</summary>
    public VmSnapshot GetSnapshot(string name, string snapshotName)
    {
        Store.Get(name);
        return Snapshots.Get(name, snapshotName);
    }

    /// <summary>The saved state of a Saved VM, or null.</summary>
    public VmSavedState? GetSavedState(string name)
    {
        Store.Get(name);
        return Snapshots.TryGetSaved(name);
    }

    /// <summary>
    /// Applies a checkpoint (Hyper-V's Restore-VMSnapshot): the current state is lost. An active VM is turned off first
    /// and saved state is discarded; disks are reverted to the checkpoint's internal snapshots, and the definition to the
    /// one stored with the checkpoint. With memory, a new kvmps-vmm restores the VM (<c>--restore</c>) and this returns
    /// once it runs again (paused if it was paused); without, the VM is off. A disk whose snapshot is missing is refused
    /// (<see cref="ManagementValidationException"/> naming the disk) before disks, definition or saved state change; an
    /// active VM has been turned off by then, since its VMM holds the disks open.
    /// </summary>
    public VmInfo RestoreSnapshot(string name, string snapshotName, TimeSpan? timeout = null, IProgress<OperationProgress>? progress = null)
    {
        VmmProcess? process;
        VmDefinition definition;
        var snapshots = Snapshots;
        using (Store.Lock())
        {
            Store.Get(name);
            var snapshot = snapshots.Get(name, snapshotName);
            definition = ReadSnapshotDefinition(snapshot);
            if (snapshot.IncludesMemory)
                SnapshotStore.CheckVmmDirectory(name, snapshot.VmmDirectory, Path.Combine(snapshot.Directory, SnapshotStore.MetadataFileName));
            var probe = Probe(name);
            // A running VMM holds its disks open (and locked): they can be looked at only once it is off.
            if (probe.Active)
                StopActive(name, probe, TimeSpan.Zero, force: true, lockHeld: true);
            CheckDiskSnapshotsExist(snapshot);
            snapshots.DeleteSaved(name);
            foreach (var disk in snapshot.DiskSnapshots)
                DiskSnapshots!.Revert(disk.Path, disk.SnapshotId);
            Store.UpdateWhileLocked(definition);
            snapshots.SetCurrent(name, snapshot.Id);
            if (!snapshot.IncludesMemory)
                return Get(name);
            ClearRuntimeFiles(name, probe.PidFilePid, removeSocket: true);
            progress?.Report(new OperationProgress($"Restoring VM '{name}'", $"Restoring checkpoint '{snapshotName}'", 0) { VmName = name });
            process = Launcher.LaunchRestore(Store, name, snapshot.VmmDirectory, paused: snapshot.VmState == nameof(VmState.Paused));
        }
        return WaitUntilBooted(definition, process, timeout ?? Options.StartTimeout, progress);
    }

    /// <summary>
    /// Removes a checkpoint (and with <paramref name="includeChildren"/> every checkpoint below it); the children of a
    /// removed checkpoint move up to its parent. Its disk snapshots are deleted, which needs the disks closed: while a
    /// VMM runs, removing a checkpoint with disk snapshots → <see cref="VmStateException"/>. Returns what was removed.
    /// </summary>
    public IReadOnlyList<VmSnapshot> RemoveSnapshot(string name, string snapshotName, bool includeChildren = false)
    {
        var snapshots = Snapshots;
        using (Store.Lock())
        {
            Store.Get(name);
            var all = snapshots.List(name);
            var target = all.FirstOrDefault(s => s.Name == snapshotName) ?? throw new SnapshotNotFoundException(name, snapshotName);
            var removed = includeChildren ? Subtree(all, target) : [target];
            IncrementalChain.CheckRemovable(name, all, removed);
            var probe = Probe(name);
            if (probe.Active && removed.Any(s => s.DiskSnapshots.Count > 0))
                throw new VmStateException(name, probe.State,
                    $"VM '{name}' is {Describe(probe.State)}; checkpoint '{snapshotName}' has disk snapshots, which can only be removed while the disks are closed: stop the VM first");
            // Children first, so a failure leaves a consistent tree (a parent is never gone while a child still points to it).
            foreach (var snapshot in removed.AsEnumerable().Reverse())
            {
                foreach (var disk in snapshot.DiskSnapshots)
                {
                    if (!File.Exists(disk.Path))
                        continue; // the disk is gone: so is its snapshot
                    RequireDiskSnapshots(name);
                    if (DiskSnapshots!.Exists(disk.Path, disk.SnapshotId))
                        DiskSnapshots.Delete(disk.Path, disk.SnapshotId);
                }
                if (!includeChildren)
                    foreach (var child in all.Where(s => s.ParentId == snapshot.Id))
                        snapshots.Rewrite(child with { ParentId = snapshot.ParentId });
                if (snapshots.CurrentId(name) == snapshot.Id)
                    snapshots.SetCurrent(name, snapshot.ParentId);
                snapshots.Delete(snapshot);
            }
            return removed;
        }
    }

    /// <summary>
    /// Saves a running or paused VM (Hyper-V's Save-VM): the VMM writes memory and device state into the store and stops;
    /// the VM is <see cref="VmState.Saved"/> and <see cref="Start"/> resumes it. Disks need no snapshot: nothing writes them
    /// while the VM is saved. A Saved VM is left as it is; other states → <see cref="VmStateException"/>. If saving fails
    /// the VM keeps running and nothing is left in the store.
    /// </summary>
    public VmInfo Save(string name)
    {
        var snapshots = Snapshots;
        using (Store.Lock())
        {
            var definition = Store.Get(name);
            var probe = Probe(name);
            if (probe.State == VmState.Saved)
                return Get(name);
            if (probe.State is not (VmState.Running or VmState.Paused))
                throw new VmStateException(name, probe.State, $"VM '{name}' is {Describe(probe.State)}; only a running or paused VM can be saved");
            snapshots.RemoveLeftovers(name);
            var staging = snapshots.CreateSavedStaging(name);
            try
            {
                CreateVmmSnapshot(definition, Path.Combine(staging, SnapshotStore.VmmDirectoryName), resume: false, snapshotDisks: false, snapshotId: null);
                snapshots.CommitSaved(staging, new VmSavedState { VmName = name, CreationTimeUtc = DateTime.UtcNow, VmState = probe.State.ToString() });
            }
            catch
            {
                TryQuietly(() => Directory.Delete(staging, recursive: true));
                // resume:false left it paused: put it back as it was.
                if (probe.State == VmState.Running)
                    TryQuietly(() => { using var client = VmmClient.Connect(Store.SocketPath(name), Options.QueryTimeout, Options.QueryTimeout); client.Resume(); });
                throw;
            }
            StopActive(name, probe, TimeSpan.Zero, force: true, lockHeld: true);
        }
        return Get(name);
    }

    // ---- internals ---------------------------------------------------------------------------------

    /// <summary>
    /// For <see cref="Remove"/> (store lock held, no VMM running): deletes the internal qcow2 snapshots of the VM's
    /// checkpoints from the disks that outlive it: every disk when <paramref name="deleteDisks"/> is false, else only
    /// disks outside the VM's disk directory. A checkpoint whose metadata cannot be read is skipped (it cannot say
    /// which snapshots it made, and must not keep the VM from being removed). Returns what was deleted.
    /// </summary>
    private List<DiskSnapshotRef> DeleteCheckpointDiskSnapshots(string name, bool deleteDisks)
    {
        var removed = new List<DiskSnapshotRef>();
        var directory = Path.Combine(Store.VmDirectory(name), SnapshotStore.SnapshotsDirectoryName);
        if (!Directory.Exists(directory))
            return removed;
        var diskDirectory = Store.DiskDirectory(name) + "/";
        foreach (var folder in Directory.EnumerateDirectories(directory).Where(d => !Path.GetFileName(d).StartsWith('.')))
        {
            VmSnapshot checkpoint;
            try
            {
                checkpoint = SnapshotMetadataJson.ReadSnapshot(name, Path.Combine(folder, SnapshotStore.MetadataFileName), Path.GetFileName(folder));
            }
            catch (SnapshotMetadataCorruptException)
            {
                continue;
            }
            foreach (var disk in checkpoint.DiskSnapshots)
            {
                if (deleteDisks && disk.Path.StartsWith(diskDirectory, StringComparison.Ordinal))
                    continue; // deleted with the VM
                if (!File.Exists(disk.Path))
                    continue; // the disk is gone: so is its snapshot
                RequireDiskSnapshots(name);
                if (!DiskSnapshots!.Exists(disk.Path, disk.SnapshotId))
                    continue;
                DiskSnapshots.Delete(disk.Path, disk.SnapshotId);
                removed.Add(disk);
            }
        }
        return removed;
    }

    private VmSnapshot CheckpointRunning(VmDefinition definition, RuntimeSnapshot probe, VmSnapshot metadata, string staging, CheckpointOptions options)
    {
        // As kvmps-vmm judges it: read-only disks never change, so only a writable raw disk stands in the way.
        var raw = definition.Disks.FirstOrDefault(d => d.Format == DiskFormat.Raw && !d.ReadOnly);
        if (raw is not null && !options.AllowRawDisks)
            throw new RawDiskSnapshotException(definition.Name, Store.ResolveDiskPath(definition.Name, raw.Path));
        var vmmDirectory = Path.Combine(staging, SnapshotStore.VmmDirectoryName);
        var result = CreateVmmSnapshot(definition, vmmDirectory, resume: true, snapshotDisks: raw is null, snapshotId: metadata.Id,
            options.Incremental ? KvmPS.Contract.SnapshotMemory.Diff : KvmPS.Contract.SnapshotMemory.Full);
        if (options.Incremental)
        {
            // The memory builds on the VMM's previous snapshot: that checkpoint is this one's parent in the tree too.
            var snapshots = Snapshots;
            var parent = IncrementalChain.LinkParent(definition.Name, vmmDirectory, snapshots.List(definition.Name), c => snapshots.StagingDirectory(c.VmName, c.Id));
            metadata = metadata with { ParentId = parent.Id };
        }
        return metadata with
        {
            IncludesMemory = true,
            VmState = result.VmState is nameof(VmState.Paused) ? nameof(VmState.Paused) : probe.State.ToString(),
            DiskSnapshots = result.DiskSnapshots.Select(d => new DiskSnapshotRef(d.Path, d.SnapshotId)).ToList(),
        };
    }

    private KvmPS.Contract.SnapshotCreateReply CreateVmmSnapshot(VmDefinition definition, string path, bool resume, bool snapshotDisks, string? snapshotId,
        KvmPS.Contract.SnapshotMemory memory = KvmPS.Contract.SnapshotMemory.Full)
    {
        var name = definition.Name;
        try
        {
            using var client = VmmClient.Connect(Store.SocketPath(name), Options.QueryTimeout, Options.QueryTimeout);
            return VmmSnapshotClient.Create(client, path, resume, snapshotDisks, snapshotId, VmmSnapshotClient.ReplyTimeout(definition.Memory.MaximumBytes), memory);
        }
        catch (VmmRequestException e) when (e.Code == "InvalidState")
        {
            throw new VmStateException(name, Probe(name).State, $"VM '{name}': kvmps-vmm refused the snapshot: {e.VmmMessage}", e);
        }
        catch (VmmNotRunningException e)
        {
            throw new VmStateException(name, VmState.Off, $"VM '{name}' stopped meanwhile", e);
        }
    }

    /// <summary>Internal snapshots of the writable qcow2 disks of a VM that is off; <paramref name="created"/> collects them for the caller's clean-up.</summary>
    private void CheckpointDisks(VmDefinition definition, string id, string snapshotName, CheckpointOptions options, List<DiskSnapshotRef> created)
    {
        var name = definition.Name;
        var writable = definition.Disks.Where(d => !d.ReadOnly).Select(d => (disk: d, path: Store.ResolveDiskPath(name, d.Path))).ToList();
        if (writable.FirstOrDefault(d => d.disk.Format == DiskFormat.Raw) is { disk: not null } raw && !options.AllowRawDisks)
            throw new RawDiskSnapshotException(name, raw.path);
        foreach (var (disk, path) in writable.Where(d => d.disk.Format == DiskFormat.Qcow2))
        {
            RequireDiskSnapshots(name);
            DiskSnapshots!.Create(path, id, snapshotName);
            created.Add(new DiskSnapshotRef(path, id));
        }
    }

    private void CheckDiskSnapshotsExist(VmSnapshot snapshot)
    {
        foreach (var disk in snapshot.DiskSnapshots)
        {
            RequireDiskSnapshots(snapshot.VmName);
            if (!File.Exists(disk.Path))
                throw new ManagementValidationException(snapshot.VmName, "Disks", $"disk '{disk.Path}' of checkpoint '{snapshot.Name}' no longer exists");
            if (!DiskSnapshots!.Exists(disk.Path, disk.SnapshotId))
                throw new ManagementValidationException(snapshot.VmName, "Disks", $"disk '{disk.Path}' has lost the internal snapshot '{disk.SnapshotId}' of checkpoint '{snapshot.Name}'");
        }
    }

    private void RequireDiskSnapshots(string name)
    {
        if (DiskSnapshots is null)
            throw new VmFeatureNotSupportedException(name, ["internal qcow2 disk snapshots (no disk snapshot provider is configured)"]);
    }

    private VmDefinition ReadSnapshotDefinition(VmSnapshot snapshot)
    {
        var path = SnapshotStore.DefinitionPath(snapshot);
        try
        {
            var definition = VmDefinitionJson.Deserialize(File.ReadAllBytes(path));
            if (definition.Name != snapshot.VmName)
                throw new SnapshotMetadataCorruptException(snapshot.VmName, path, $"it defines VM '{definition.Name}'");
            return definition;
        }
        catch (Exception e) when (e is VmDefinitionException or IOException)
        {
            throw new SnapshotMetadataCorruptException(snapshot.VmName, path, e.Message, e);
        }
    }

    internal static string ValidateSnapshotName(string vmName, string snapshotName)
    {
        if (string.IsNullOrWhiteSpace(snapshotName))
            throw new ManagementValidationException(vmName, "SnapshotName", "must not be empty");
        if (snapshotName.Length > MaximumSnapshotNameLength)
            throw new ManagementValidationException(vmName, "SnapshotName", $"is {snapshotName.Length} characters long; at most {MaximumSnapshotNameLength} are allowed");
        if (snapshotName.Any(char.IsControl))
            throw new ManagementValidationException(vmName, "SnapshotName", "must not contain control characters");
        return snapshotName;
    }

    private static string UniqueDefaultName(string vmName, IReadOnlyList<VmSnapshot> existing)
    {
        var baseName = DefaultSnapshotName(vmName, DateTime.Now);
        var candidate = baseName;
        for (var n = 2; existing.Any(s => s.Name == candidate); n++)
            candidate = $"{baseName} ({n})";
        return candidate;
    }

    /// <summary><paramref name="root"/> and its descendants, parents before children.</summary>
    internal static List<VmSnapshot> Subtree(IReadOnlyList<VmSnapshot> all, VmSnapshot root)
    {
        var result = new List<VmSnapshot> { root };
        for (var i = 0; i < result.Count; i++)
            result.AddRange(all.Where(s => s.ParentId == result[i].Id && !result.Contains(s)));
        return result;
    }

    private static void TryQuietly(Action action)
    {
        try
        {
            action();
        }
        catch (Exception)
        {
            // Clean-up after a failure: the original error is what the caller needs to see.
        }
    }
}
