using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Snapshots;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;
using KvmPS.Storage;

namespace KvmPS.Management.Tests.Snapshots;

/// <summary>Checkpoints of a VM that is off on real qcow2 images (KvmPS.Storage's internal snapshots).</summary>
public sealed class QcowCheckpointTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly VmStore _store;
    private readonly VmManager _manager;
    private readonly string _disk;

    public QcowCheckpointTests()
    {
        _store = VmStore.Open(_root.Path);
        _manager = new VmManager(_store, new VmmProcessLauncher("/nonexistent/kvmps-vmm"), new StorageDiskImageCreator()) { DiskSnapshots = new QcowDiskSnapshots() };
        _manager.New(TestDefinitions.Minimal("q") with { Disks = new[] { new DiskDefinition("root.qcow2", DiskFormat.Qcow2, 1L << 20) } });
        _disk = _store.ResolveDiskPath("q", "root.qcow2");
    }

    public void Dispose() => _root.Dispose();

    private void Fill(byte value)
    {
        using var image = DiskImageFactory.Open(_disk);
        image.Write(0, Enumerable.Repeat(value, 4096).ToArray());
        image.Flush();
    }

    private byte FirstByte()
    {
        using var image = DiskImageFactory.Open(_disk, readOnly: true);
        var buffer = new byte[512];
        image.Read(0, buffer);
        return buffer[0];
    }

    [Fact]
    public void Checkpoint_restore_and_remove_work_on_the_image()
    {
        Fill(0x41);
        var snapshot = _manager.Checkpoint("q", "s1");
        var inImage = Assert.Single(KvmPS.Storage.DiskSnapshots.List(_disk));
        Assert.Equal((snapshot.Id, "s1"), (inImage.Id, inImage.Name));

        Fill(0x42);
        Assert.Equal(0x42, FirstByte());
        Assert.Equal(VmState.Off, _manager.RestoreSnapshot("q", "s1").State);
        Assert.Equal(0x41, FirstByte());

        _manager.RemoveSnapshot("q", "s1");
        Assert.Empty(KvmPS.Storage.DiskSnapshots.List(_disk));
        Assert.Equal(0x41, FirstByte());
    }

    [Fact]
    public void A_disk_that_lost_its_snapshot_is_refused_naming_it()
    {
        var snapshot = _manager.Checkpoint("q", "s1");
        KvmPS.Storage.DiskSnapshots.Delete(_disk, snapshot.Id);
        var e = Assert.Throws<ManagementValidationException>(() => _manager.RestoreSnapshot("q", "s1"));
        Assert.Contains(_disk, e.Message);
    }

    [Fact]
    public void Removing_a_vm_deletes_its_checkpoints_snapshots_from_a_disk_outside_the_store()
    {
        // Hyper-V's Remove-VM deletes the VM's checkpoints: nothing of them may stay behind in a disk that outlives it.
        var outside = Path.Combine(_root.Path, "outside.qcow2");
        _manager.New(TestDefinitions.Minimal("o") with
        {
            Disks = new[] { new DiskDefinition("own.qcow2", DiskFormat.Qcow2, 1L << 20), new DiskDefinition(outside, DiskFormat.Qcow2, 1L << 20) },
        });
        var s1 = _manager.Checkpoint("o", "s1");
        var s2 = _manager.Checkpoint("o", "s2");
        Assert.Equal(2, KvmPS.Storage.DiskSnapshots.List(outside).Count);
        KvmPS.Storage.DiskSnapshots.Create(outside, "mine", "not the VM's"); // someone else's snapshot stays

        var result = _manager.Remove("o");

        Assert.True(File.Exists(outside));
        Assert.Equal(["mine"], KvmPS.Storage.DiskSnapshots.List(outside).Select(s => s.Id));
        Assert.Equal(new[] { s1.Id, s2.Id }.Order(StringComparer.Ordinal), result.RemovedDiskSnapshots.Select(d => d.SnapshotId).Order(StringComparer.Ordinal));
        Assert.All(result.RemovedDiskSnapshots, d => Assert.Equal(outside, d.Path)); // the disk deleted with the VM is not touched first
        Assert.False(_store.Exists("o"));
    }

    [Fact]
    public void Removing_a_vm_and_keeping_its_disks_leaves_them_without_its_checkpoints()
    {
        _manager.Checkpoint("q", "s1");
        Fill(0x43);
        var result = _manager.Remove("q", deleteDisks: false);
        var kept = Path.Combine(result.RetainedDisksDirectory!, "root.qcow2");
        Assert.Empty(KvmPS.Storage.DiskSnapshots.List(kept));
        Assert.Single(result.RemovedDiskSnapshots);
        using var image = DiskImageFactory.Open(kept, readOnly: true);
        var buffer = new byte[512];
        image.Read(0, buffer);
        Assert.Equal(0x43, buffer[0]); // the disk keeps its current data, not the checkpoint's
    }

    [Fact]
    public void A_vm_whose_checkpoint_disk_cannot_be_changed_is_not_removed()
    {
        var outside = Path.Combine(_root.Path, "locked.qcow2");
        _manager.New(TestDefinitions.Minimal("l") with { Disks = new[] { new DiskDefinition(outside, DiskFormat.Qcow2, 1L << 20) } });
        var s1 = _manager.Checkpoint("l", "s1");
        using (DiskImageFactory.Open(outside)) // another process (a VMM of another VM) has the image open for writing
        {
            var e = Assert.ThrowsAny<Exception>(() => _manager.Remove("l"));
            Assert.Contains(outside, e.Message);
        }
        Assert.True(_store.Exists("l"));
        Assert.Equal("s1", Assert.Single(_manager.GetSnapshots("l")).Name);
        _manager.Remove("l"); // once the disk is free, the removal goes on where it stopped
        Assert.Empty(KvmPS.Storage.DiskSnapshots.List(outside));
        Assert.False(_store.Exists("l"));
        Assert.NotNull(s1);
    }

    [Fact]
    public void The_default_manager_has_real_disk_snapshots() =>
        Assert.IsType<QcowDiskSnapshots>(VmManager.OpenDefault(_store).DiskSnapshots);
}
