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
    public void The_default_manager_has_real_disk_snapshots() =>
        Assert.IsType<QcowDiskSnapshots>(VmManager.OpenDefault(_store).DiskSnapshots);
}
