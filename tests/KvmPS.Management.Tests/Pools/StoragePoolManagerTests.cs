using KvmPS.Interop;
using KvmPS.Management.Definitions;
using KvmPS.Management.Pools;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

#pragma warning disable CA1416 // Linux only

namespace KvmPS.Management.Tests.Pools;

public sealed class StoragePoolManagerTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly string _root;
    private readonly string _images;

    public StoragePoolManagerTests()
    {
        _root = Path.Combine(_temp.Path, "store");
        _images = Path.Combine(_temp.Path, "images");
        Directory.CreateDirectory(_images);
    }

    public void Dispose() => _temp.Dispose();

    /// <summary>Only the store is allowed (no KVMPS_ALLOWED_PATHS=/): pool folders must count on their own.</summary>
    private VmStore OpenStore() => VmStore.Open(_root, allowedPaths: AllowedPaths.StoreOnly(_root));

    private StoragePoolManager Open() => new(OpenStore());

    [Fact]
    public void DefaultPoolExistsOutOfTheBoxUnderTheStore()
    {
        var pools = Open().List();

        var pool = Assert.Single(pools);
        Assert.Equal("default", pool.Name);
        Assert.True(pool.IsDefault);
        Assert.Equal(Path.Combine(_root, "pools", "default"), pool.Path);
        Assert.Equal(StoragePoolState.Active, pool.State);
        Assert.True(pool.CapacityBytes > 0 && pool.AvailableBytes > 0);
        Assert.Equal(0u, FileOwnership.Of(pool.Path)!.Value.Permissions & 0x3F /* 0077 */);
    }

    [Fact]
    public void CreatedPoolReportsFileSystemSpaceAndSurvivesANewManager()
    {
        var created = Open().Create("lab", _images, autostart: true);

        Assert.Equal(_images, created.Path);
        Assert.True(created.Autostart);
        var expected = FileSystemSpace.Of(_images);
        Assert.Equal((long)expected.CapacityBytes, created.CapacityBytes);
        Assert.True(created.AllocationBytes > 0);

        // A new store object and manager (as a new process would make) sees the pool.
        var again = Open().Get("lab");
        Assert.Equal(_images, again.Path);
        Assert.True(again.Autostart);
        Assert.Equal(["default", "lab"], Open().List().Select(p => p.Name));
        var file = Path.Combine(_root, "pools", "lab.pool.json");
        Assert.Equal(0x180u /* 0600 */, FileOwnership.Of(file)!.Value.Permissions);
        Assert.Equal(0x1C0u /* 0700 */, FileOwnership.Of(Path.Combine(_root, "pools"))!.Value.Permissions);
    }

    [Fact]
    public void BadPoolPathsAreRefusedNamingThePathAndNothingIsMade()
    {
        var manager = Open();
        var file = Path.Combine(_temp.Path, "a-file");
        File.WriteAllText(file, "x");
        var missing = Path.Combine(_temp.Path, "missing");

        var isFile = Assert.Throws<StoragePoolSettingException>(() => manager.Create("p", file));
        Assert.Equal("Path", isFile.Property);
        Assert.Contains(file, isFile.Message);
        Assert.Contains("is a file", isFile.Message);

        var notThere = Assert.Throws<StoragePoolSettingException>(() => manager.Create("p", missing));
        Assert.Contains(missing, notThere.Message);
        Assert.Contains("does not exist", notThere.Message);
        Assert.False(Directory.Exists(missing));

        var relative = Assert.Throws<StoragePoolSettingException>(() => manager.Create("p", "images"));
        Assert.Contains("absolute", relative.Message);

        var storeItself = Assert.Throws<StoragePoolSettingException>(() => manager.Create("p", Path.Combine(_root, "vms")));
        Assert.Contains("store", storeItself.Message);

        Assert.Equal(["default"], manager.List().Select(p => p.Name));
        Assert.False(File.Exists(Path.Combine(_root, "pools", "p.pool.json")));
    }

    [Fact]
    public void MissingFolderIsCreatedOnlyWhenAskedFor()
    {
        var missing = Path.Combine(_temp.Path, "new", "pool");

        var pool = Open().Create("made", missing, createPath: true);

        Assert.Equal(StoragePoolState.Active, pool.State);
        Assert.Equal(0x1C0u /* 0700 */, FileOwnership.Of(missing)!.Value.Permissions);
    }

    [Fact]
    public void AFolderWritableByOthersIsRefused()
    {
        File.SetUnixFileMode(_images, (UnixFileMode)0x1FF);

        var error = Assert.Throws<StoragePoolSettingException>(() => Open().Create("open", _images));

        Assert.Contains("writable by group or others", error.Message);
    }

    [Fact]
    public void UnreadableFolderIsRefusedForAnOrdinaryUser()
    {
        if (Libc.GetEuid() == 0)
            return; // root reads every folder; the check is for per-user stores
        File.SetUnixFileMode(_images, UnixFileMode.None);
        try
        {
            var error = Assert.Throws<StoragePoolSettingException>(() => Open().Create("locked", _images));
            Assert.Contains("not readable", error.Message);
        }
        finally
        {
            File.SetUnixFileMode(_images, (UnixFileMode)0x1C0);
        }
    }

    [Fact]
    public void DuplicateNamesAndFoldersAreRefused()
    {
        var manager = Open();
        manager.Create("lab", _images);
        var other = Path.Combine(_temp.Path, "other");
        Directory.CreateDirectory(other);

        Assert.Contains("already exists", Assert.Throws<StoragePoolAlreadyExistsException>(() => manager.Create("lab", other)).Message);
        Assert.Contains("pool 'lab'", Assert.Throws<StoragePoolAlreadyExistsException>(() => manager.Create("lab2", _images)).Message);
        Assert.Contains("built-in", Assert.Throws<StoragePoolAlreadyExistsException>(() => manager.Create("default", other)).Message);
        Assert.Throws<StoragePoolSettingException>(() => manager.Create("../x", other));
        Assert.Throws<StoragePoolSettingException>(() => manager.Create("", other));
    }

    [Theory]
    [InlineData("a/b")]
    [InlineData("..")]
    [InlineData(".")]
    [InlineData("")]
    [InlineData(".hidden")]
    [InlineData("x\ny")]
    public void BadVolumeNamesAreRefusedWithTheName(string name)
    {
        var manager = Open();

        var error = Assert.Throws<StorageVolumeSettingException>(() => manager.CreateVolume("default", name, 1 << 20));

        Assert.Equal("Name", error.Property);
        Assert.Contains("default", error.Message);
        Assert.Empty(manager.ListVolumes("default"));
    }

    [Fact]
    public void VolumesAreCreatedListedAndRemoved()
    {
        var manager = Open();
        manager.Create("lab", _images);

        var raw = manager.CreateVolume("lab", "data.raw", 4 << 20);
        var qcow = manager.CreateVolume("lab", "web1.qcow2", 64 << 20);
        var overlay = manager.CreateVolume("lab", "web2.qcow2", null, backingVolume: "web1.qcow2");

        Assert.Equal(DiskFormat.Raw, raw.Format);
        Assert.Equal(4 << 20, raw.CapacityBytes);
        Assert.True(raw.AllocationBytes < raw.CapacityBytes); // sparse
        Assert.Equal(DiskFormat.Qcow2, qcow.Format);
        Assert.Equal(64 << 20, qcow.CapacityBytes);
        Assert.Equal("web1.qcow2", overlay.BackingVolume);
        Assert.Equal(64 << 20, overlay.CapacityBytes);
        Assert.Equal(0x180u /* 0600 */, FileOwnership.Of(qcow.Path)!.Value.Permissions);
        Assert.Equal(["data.raw", "web1.qcow2", "web2.qcow2"], manager.ListVolumes("lab").Select(v => v.Name));
        Assert.Equal(3, manager.Get("lab").VolumeCount);

        Assert.Throws<StorageVolumeAlreadyExistsException>(() => manager.CreateVolume("lab", "data.raw", 1 << 20));
        var inUse = Assert.Throws<StorageVolumeInUseException>(() => manager.RemoveVolume("lab", "web1.qcow2"));
        Assert.Equal(["web2.qcow2"], inUse.BackedVolumes);

        manager.RemoveVolume("lab", "web2.qcow2");
        manager.RemoveVolume("lab", "web1.qcow2");
        Assert.Throws<StorageVolumeNotFoundException>(() => manager.RemoveVolume("lab", "web1.qcow2"));
        Assert.Equal(["data.raw"], manager.ListVolumes("lab").Select(v => v.Name));
    }

    [Fact]
    public void BadVolumeSettingsAreRefusedAndNothingIsMade()
    {
        var manager = Open();

        Assert.Equal("SizeBytes", Assert.Throws<StorageVolumeSettingException>(() => manager.CreateVolume("default", "a.raw", null)).Property);
        Assert.Equal("SizeBytes", Assert.Throws<StorageVolumeSettingException>(() => manager.CreateVolume("default", "a.raw", 1000)).Property);
        Assert.Equal("BackingVolume", Assert.Throws<StorageVolumeSettingException>(() => manager.CreateVolume("default", "a.qcow2", null, backingVolume: "nope.qcow2")).Property);
        Assert.Equal("BackingVolume", Assert.Throws<StorageVolumeSettingException>(() => manager.CreateVolume("default", "a.raw", null, DiskFormat.Raw, "b.qcow2")).Property);
        Assert.Throws<StoragePoolNotFoundException>(() => manager.CreateVolume("nope", "a.raw", 1 << 20));
        Assert.Empty(manager.ListVolumes("default"));
    }

    [Fact]
    public void AVolumeAVmUsesCannotBeRemovedAndNamesTheVm()
    {
        var store = OpenStore();
        var manager = new StoragePoolManager(store);
        manager.Create("lab", _images);
        manager.CreateVolume("lab", "web1.qcow2", 16 << 20);
        manager.CreateVolume("default", "boot.raw", 1 << 20);
        store.Create(TestDefinitions.Minimal("web1") with
        {
            Disks = new[] { new DiskDefinition(PoolVolumeReference.Format("lab", "web1.qcow2"), DiskFormat.Qcow2) },
        });
        store.Create(TestDefinitions.Minimal("web2") with
        {
            Disks = new[] { new DiskDefinition(Path.Combine(_root, "pools", "default", "boot.raw")) },
        });

        var byReference = Assert.Throws<StorageVolumeInUseException>(() => manager.RemoveVolume("lab", "web1.qcow2"));
        Assert.Equal(["web1"], byReference.VmNames);
        Assert.Contains("'web1'", byReference.Message);
        var byPath = Assert.Throws<StorageVolumeInUseException>(() => manager.RemoveVolume("default", "boot.raw"));
        Assert.Equal(["web2"], byPath.VmNames);
        Assert.Equal(["web1"], manager.GetVolume("lab", "web1.qcow2").UsedBy);

        var poolInUse = Assert.Throws<StoragePoolInUseException>(() => manager.Remove("lab"));
        Assert.Equal(["web1"], poolInUse.VmNames);
        Assert.Contains("'web1'", poolInUse.Message);
        Assert.Throws<StoragePoolInUseException>(() => manager.Remove("default"));

        store.Delete("web1", DiskRetention.Keep);
        manager.Remove("lab");
        Assert.Throws<StoragePoolNotFoundException>(() => manager.Get("lab"));
        Assert.True(File.Exists(Path.Combine(_images, "web1.qcow2"))); // removing a pool forgets it; the files stay
    }

    [Fact]
    public void PoolFoldersCountAsAllowedPathsAndReferencesFollowAMovedPool()
    {
        var store = OpenStore();
        var manager = new StoragePoolManager(store);
        var definition = TestDefinitions.Minimal("web1") with
        {
            Disks = new[] { new DiskDefinition(PoolVolumeReference.Format("lab", "web1.qcow2"), DiskFormat.Qcow2) },
        };
        var outside = TestDefinitions.Minimal("web2") with { Disks = new[] { new DiskDefinition(Path.Combine(_images, "x.raw")) } };
        Assert.Throws<PathNotAllowedException>(() => store.CheckPaths(outside));
        Assert.Throws<StoragePoolNotFoundException>(() => store.CheckPaths(definition));

        manager.Create("lab", _images);
        store.CheckPaths(outside);
        store.CheckPaths(definition);
        Assert.Equal(Path.Combine(_images, "web1.qcow2"), store.ResolveDiskPath("web1", definition.Disks[0].Path));

        var moved = Path.Combine(_temp.Path, "moved");
        Directory.CreateDirectory(moved);
        manager.Set("lab", path: moved);
        Assert.Equal(Path.Combine(moved, "web1.qcow2"), store.ResolveDiskPath("web1", definition.Disks[0].Path));
    }

    [Fact]
    public void MissingPoolFolderIsReportedAndRecreated()
    {
        var manager = Open();
        manager.Create("lab", _images, autostart: true);
        Directory.Delete(_images);

        Assert.Equal(StoragePoolState.Missing, manager.Get("lab").State);
        Assert.True(manager.EnsureFolder("lab"));
        Assert.False(manager.EnsureFolder("lab"));
        Assert.Equal(StoragePoolState.Active, manager.Get("lab").State);
    }
}

public sealed class StoragePoolAutostartTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void AutostartRecreatesTheFoldersOfAutostartPoolsOnly()
    {
        var root = Path.Combine(_temp.Path, "store");
        var store = VmStore.Open(root, allowedPaths: AllowedPaths.StoreOnly(root));
        var pools = new StoragePoolManager(store);
        var on = Path.Combine(_temp.Path, "on");
        var off = Path.Combine(_temp.Path, "off");
        pools.Create("on", on, autostart: true, createPath: true);
        pools.Create("off", off, autostart: false, createPath: true);
        Directory.Delete(on);
        Directory.Delete(off);

        var results = new KvmPS.Management.Lifecycle.VmManager(store).Autostart();

        // No VMs: only the pool, reported as re-created (a failed pool would be reported too, not dropped).
        var pool = Assert.Single(results, r => r.Name == "on");
        Assert.Equal(KvmPS.Management.Lifecycle.AutostartResourceKind.Pool, pool.Kind);
        Assert.Equal(KvmPS.Management.Lifecycle.AutostartOutcome.Started, pool.Outcome);
        Assert.DoesNotContain(results, r => r.Name == "off" || r.Kind == KvmPS.Management.Lifecycle.AutostartResourceKind.Vm);
        Assert.True(Directory.Exists(on));
        Assert.False(Directory.Exists(off));
    }
}

public sealed class PoolDiskAttachTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void AttachingADiskByPoolCreatesTheVolumeInThePoolAndStoresTheReference()
    {
        var root = Path.Combine(_temp.Path, "store");
        var manager = new KvmPS.Management.Lifecycle.VmManager(VmStore.Open(root, allowedPaths: AllowedPaths.StoreOnly(root)),
            diskImageCreator: new KvmPS.Management.Lifecycle.StorageDiskImageCreator());
        var pools = new StoragePoolManager(manager.Store);
        var folder = Path.Combine(_temp.Path, "lab");
        pools.Create("lab", folder, createPath: true);
        manager.New(TestDefinitions.Minimal("web1"));

        manager.AttachDisk("web1", new KvmPS.Management.Lifecycle.DiskAttachRequest(PoolVolumeReference.Format("lab", "data.qcow2"), CreateSizeBytes: 1 << 20));

        Assert.True(File.Exists(Path.Combine(folder, "data.qcow2")));
        var disk = Assert.Single(manager.Store.Get("web1").Disks);
        Assert.Equal(("lab", "data.qcow2"), (disk.Pool, disk.Volume));
        Assert.Equal(["web1"], pools.GetVolume("lab", "data.qcow2").UsedBy);
    }
}

public sealed class FileSystemSpaceTests
{
    [Fact]
    public void StatvfsAgreesWithDf()
    {
        var info = new System.Diagnostics.ProcessStartInfo("df", ["-B1", "--output=size,avail", "/tmp"]) { RedirectStandardOutput = true };
        using var df = System.Diagnostics.Process.Start(info)!;
        var lines = df.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        df.WaitForExit();
        var fields = lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(ulong.Parse).ToArray();

        var space = FileSystemSpace.Of("/tmp");

        Assert.Equal(fields[0], space.CapacityBytes);
        Assert.InRange((double)space.AvailableBytes, fields[1] * 0.9, fields[1] * 1.1 + (1 << 30)); // /tmp is busy: allow drift
        Assert.True(space.UsedBytes <= space.CapacityBytes);
        Assert.Throws<NativeCallException>(() => FileSystemSpace.Of("/no/such/folder"));
    }
}
