using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Snapshots;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Snapshots;

/// <summary>Checkpoints of VMs that are off, saved state and the state rules; no VMM runs (the running paths are in SnapshotVmmTests).</summary>
public sealed class CheckpointLifecycleTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly VmStore _store;
    private readonly RecordingDiskSnapshots _disks = new();
    private readonly VmManager _manager;

    public CheckpointLifecycleTests()
    {
        _store = VmStore.Open(_root.Path);
        _manager = new VmManager(_store, new VmmProcessLauncher("/nonexistent/kvmps-vmm")) { DiskSnapshots = _disks };
    }

    public void Dispose() => _root.Dispose();

    private string CreateVm(string name, params DiskDefinition[] disks)
    {
        _store.Create(TestDefinitions.Minimal(name) with { Disks = new ValueList<DiskDefinition>(disks) });
        foreach (var disk in disks)
            File.WriteAllBytes(_store.ResolveDiskPath(name, disk.Path), new byte[512]);
        return name;
    }

    private static DiskDefinition Qcow(string path) => new(path, DiskFormat.Qcow2, null);

    [Fact]
    public void Checkpoint_of_a_VM_that_is_off_snapshots_each_writable_qcow2_disk_and_chains_parents()
    {
        CreateVm("web", Qcow("root.qcow2"), new DiskDefinition("iso.raw", DiskFormat.Raw, null, true));
        var first = _manager.Checkpoint("web", "s1");
        var second = _manager.Checkpoint("web", "s2");

        Assert.False(first.IncludesMemory);
        Assert.Equal("Off", first.VmState);
        Assert.Null(first.ParentId);
        Assert.Equal(first.Id, second.ParentId);
        var root = _store.ResolveDiskPath("web", "root.qcow2");
        Assert.Equal([new DiskSnapshotRef(root, first.Id)], first.DiskSnapshots);
        Assert.True(_disks.Exists(root, second.Id));
        Assert.DoesNotContain(_disks.Calls, c => c.Contains("iso.raw")); // read-only: never changes
        Assert.Equal(["s1", "s2"], _manager.GetSnapshots("web").Select(s => s.Name));
        Assert.True(File.Exists(Path.Combine(_store.VmDirectory("web"), "snapshots", first.Id, "snapshot.json")));
        Assert.True(File.Exists(Path.Combine(_store.VmDirectory("web"), "snapshots", first.Id, "vm.json")));
        Assert.True(first.SizeBytes > 0);
    }

    [Fact]
    public void Default_name_is_Hyper_V_style_and_unique()
    {
        CreateVm("web", Qcow("root.qcow2"));
        var a = _manager.Checkpoint("web");
        var b = _manager.Checkpoint("web");
        Assert.StartsWith("web - (", a.Name);
        Assert.EndsWith(")", a.Name);
        Assert.NotEqual(a.Name, b.Name);
    }

    [Fact]
    public void Name_conflict_and_bad_names_are_refused_naming_them()
    {
        CreateVm("web", Qcow("root.qcow2"));
        _manager.Checkpoint("web", "s1");
        var e = Assert.Throws<SnapshotAlreadyExistsException>(() => _manager.Checkpoint("web", "s1"));
        Assert.Equal("s1", e.SnapshotName);
        Assert.Contains("'s1'", e.Message);
        Assert.Throws<ManagementValidationException>(() => _manager.Checkpoint("web", " "));
        Assert.Throws<ManagementValidationException>(() => _manager.Checkpoint("web", new string('x', 101)));
        Assert.Single(_manager.GetSnapshots("web"));
    }

    [Fact]
    public void A_writable_raw_disk_is_refused_unless_accepted()
    {
        CreateVm("web", Qcow("root.qcow2"), new DiskDefinition("data.raw", DiskFormat.Raw, null));
        var e = Assert.Throws<RawDiskSnapshotException>(() => _manager.Checkpoint("web", "s1"));
        Assert.Equal(_store.ResolveDiskPath("web", "data.raw"), e.DiskPath);
        Assert.Empty(_manager.GetSnapshots("web"));
        Assert.Empty(_disks.Calls);
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(_store.VmDirectory("web"), "snapshots")));

        var accepted = _manager.Checkpoint("web", "s1", new CheckpointOptions { AllowRawDisks = true });
        Assert.Single(accepted.DiskSnapshots);
    }

    [Fact]
    public void A_failing_disk_snapshot_undoes_the_ones_taken()
    {
        CreateVm("web", Qcow("a.qcow2"), Qcow("b.qcow2"));
        File.Delete(_store.ResolveDiskPath("web", "b.qcow2"));
        Assert.Throws<FileNotFoundException>(() => _manager.Checkpoint("web", "s1"));
        Assert.Empty(_disks.Ids[_store.ResolveDiskPath("web", "a.qcow2")]);
        Assert.Empty(_manager.GetSnapshots("web"));
    }

    [Fact]
    public void Restore_without_memory_reverts_disks_and_the_definition()
    {
        CreateVm("web", Qcow("root.qcow2"));
        var s1 = _manager.Checkpoint("web", "s1");
        _manager.Update("web", d => d with { Notes = "after" });
        _manager.Checkpoint("web", "s2");

        var info = _manager.RestoreSnapshot("web", "s1");
        Assert.Equal(VmState.Off, info.State);
        Assert.Equal("", info.Definition.Notes);
        Assert.Contains($"revert {_store.ResolveDiskPath("web", "root.qcow2")} {s1.Id}", _disks.Calls);
        // The next checkpoint hangs below the restored one.
        Assert.Equal(s1.Id, _manager.Checkpoint("web", "s3").ParentId);
    }

    [Fact]
    public void Restore_refuses_a_disk_that_lost_its_snapshot_and_changes_nothing()
    {
        CreateVm("web", Qcow("root.qcow2"));
        var s1 = _manager.Checkpoint("web", "s1");
        _manager.Update("web", d => d with { Notes = "after" });
        var root = _store.ResolveDiskPath("web", "root.qcow2");
        _disks.Ids[root].Remove(s1.Id);
        var e = Assert.Throws<ManagementValidationException>(() => _manager.RestoreSnapshot("web", "s1"));
        Assert.Contains(root, e.Message);
        Assert.Equal("after", _store.Get("web").Notes);
        Assert.Throws<SnapshotNotFoundException>(() => _manager.RestoreSnapshot("web", "nope"));
    }

    [Fact]
    public void Remove_moves_children_up_or_removes_the_subtree()
    {
        CreateVm("web", Qcow("root.qcow2"));
        var s1 = _manager.Checkpoint("web", "s1");
        var s2 = _manager.Checkpoint("web", "s2");
        var s3 = _manager.Checkpoint("web", "s3");
        var root = _store.ResolveDiskPath("web", "root.qcow2");

        _manager.RemoveSnapshot("web", "s2");
        Assert.False(_disks.Exists(root, s2.Id));
        Assert.Equal(s1.Id, _manager.GetSnapshot("web", "s3").ParentId);

        var removed = _manager.RemoveSnapshot("web", "s1", includeChildren: true);
        Assert.Equal(["s1", "s3"], removed.Select(s => s.Name));
        Assert.Empty(_manager.GetSnapshots("web"));
        Assert.Empty(_disks.Ids[root]);
        Assert.Null(_manager.Checkpoint("web", "fresh").ParentId); // current went with them
        Assert.Throws<SnapshotNotFoundException>(() => _manager.RemoveSnapshot("web", "s1"));
        _ = s3;
    }

    [Fact]
    public void Corrupt_metadata_in_the_store_is_reported_naming_the_file()
    {
        CreateVm("web", Qcow("root.qcow2"));
        var s1 = _manager.Checkpoint("web", "s1");
        var path = Path.Combine(s1.Directory, "snapshot.json");
        File.WriteAllText(path, "{ truncated");
        var e = Assert.Throws<SnapshotMetadataCorruptException>(() => _manager.GetSnapshots("web"));
        Assert.Equal(path, e.Path);
    }

    [Fact]
    public void A_saved_VM_is_Saved_resists_a_graceful_stop_and_is_discarded_by_turn_off()
    {
        CreateVm("web");
        WriteSavedState("web", "Running");
        Assert.Equal(VmState.Saved, _manager.Get("web").State);
        Assert.False(_manager.Get("web").IsActive);
        Assert.Equal("Running", _manager.GetSavedState("web")!.VmState);

        var e = Assert.Throws<VmStateException>(() => _manager.Stop("web"));
        Assert.Equal(VmState.Saved, e.State);
        Assert.Throws<VmStateException>(() => _manager.Checkpoint("web", "s1"));
        Assert.Equal(VmState.Saved, _manager.Save("web").State); // already saved: nothing to do

        var result = _manager.Stop("web", force: true);
        Assert.Equal(VmStopOutcome.SavedStateDiscarded, result.Outcome);
        Assert.Equal(VmState.Off, _manager.Get("web").State);
        Assert.False(Directory.Exists(Path.Combine(_store.VmDirectory("web"), "saved")));
    }

    [Fact]
    public void Save_of_a_VM_that_is_off_is_refused()
    {
        CreateVm("web");
        var e = Assert.Throws<VmStateException>(() => _manager.Save("web"));
        Assert.Equal(VmState.Off, e.State);
        Assert.Contains("running or paused", e.Message);
    }

    [Fact]
    public void Start_of_a_saved_VM_restores_from_the_saved_state()
    {
        CreateVm("web");
        var saved = WriteSavedState("web", "Paused");
        File.Delete(Path.Combine(saved.VmmDirectory, "memory.bin"));
        var missing = Assert.Throws<SnapshotMetadataCorruptException>(() => _manager.Start("web"));
        Assert.Contains("memory.bin", missing.Message);
        File.WriteAllText(Path.Combine(saved.VmmDirectory, "memory.bin"), "");
        // The launcher's binary does not exist: the attempt (logged in vmm.log) shows which path Start took, and the saved state stays.
        Assert.Throws<VmmLaunchException>(() => _manager.Start("web"));
        Assert.Contains($"restoring from '{saved.VmmDirectory}'", File.ReadAllText(_store.VmmLogPath("web")));
        Assert.Equal(VmState.Saved, _manager.Get("web").State);
        Assert.True(Directory.Exists(saved.VmmDirectory));
    }

    [Fact]
    public void A_checkpoint_whose_memory_file_is_gone_is_refused_before_anything_changes()
    {
        CreateVm("web");
        var snapshot = _manager.Checkpoint("web", "s1");
        // Make it look like a checkpoint with memory whose memory.bin was lost.
        Directory.CreateDirectory(snapshot.VmmDirectory);
        File.WriteAllText(Path.Combine(snapshot.VmmDirectory, "state.bin"), "x");
        File.WriteAllText(Path.Combine(snapshot.VmmDirectory, "config.json"), "{}");
        new SnapshotStore(_store).Rewrite(snapshot with { IncludesMemory = true, VmState = "Running" });
        _manager.Update("web", d => d with { Notes = "now" });

        var e = Assert.Throws<SnapshotMetadataCorruptException>(() => _manager.RestoreSnapshot("web", "s1"));
        Assert.Contains(Path.Combine(snapshot.VmmDirectory, "memory.bin"), e.Message);
        Assert.Equal("now", _store.Get("web").Notes);
    }

    [Fact]
    public void Restore_arguments_name_the_snapshot_socket_and_console()
    {
        var argv = VmmProcessLauncher.RestoreArguments("/bin/kvmps-vmm", "/s/vms/web/snapshots/x/vmm", paused: true, "/s/vms/web/control.sock", "/s/vms/web/serial.log");
        Assert.Equal(["/bin/kvmps-vmm", "--restore", "/s/vms/web/snapshots/x/vmm", "--paused", "--control-socket", "/s/vms/web/control.sock", "--serial", "file:/s/vms/web/serial.log"], argv);
        Assert.DoesNotContain("--paused", VmmProcessLauncher.RestoreArguments("/b", "/d", paused: false, "/s", "/l"));
        Assert.Contains("--config", VmmProcessLauncher.BootArguments("/b", "/c", "/s", "/l"));
    }

    private VmSavedState WriteSavedState(string name, string state)
    {
        var snapshots = new SnapshotStore(_store);
        var staging = snapshots.CreateSavedStaging(name);
        Directory.CreateDirectory(Path.Combine(staging, "vmm"));
        foreach (var file in SnapshotStore.VmmSnapshotFiles)
            File.WriteAllText(Path.Combine(staging, "vmm", file), "{}");
        return snapshots.CommitSaved(staging, new VmSavedState { VmName = name, CreationTimeUtc = DateTime.UtcNow, VmState = state });
    }
}
