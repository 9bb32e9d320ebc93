using KvmPS.Management.Definitions;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Store;

public sealed class VmStoreTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly VmStore _store;

    public VmStoreTests() => _store = VmStore.Open(_root.Path);

    public void Dispose() => _root.Dispose();

    [Fact]
    public void Open_creates_the_layout()
    {
        Assert.True(Directory.Exists(Path.Combine(_root.Path, "vms")));
        Assert.True(File.Exists(Path.Combine(_root.Path, ".lock")));
        Assert.Equal(_root.Path, _store.Root);
    }

    [Fact]
    public void Create_get_list_update_delete()
    {
        var full = TestDefinitions.Full("web-01");
        _store.Create(full);
        _store.Create(TestDefinitions.Minimal("db"));

        Assert.Equal(full, _store.Get("web-01"));
        Assert.True(_store.Exists("db"));
        Assert.Equal(new[] { "db", "web-01" }, _store.ListNames());
        Assert.Equal(new[] { "db", "web-01" }, _store.List().Select(d => d.Name));
        Assert.True(Directory.Exists(_store.DiskDirectory("web-01")));
        Assert.True(File.Exists(Path.Combine(_root.Path, "vms", "web-01", "vm.json")));

        var updated = full with { Notes = "changed", Vcpus = new VcpuSettings(4, 8) };
        _store.Update(updated);
        Assert.Equal(updated, _store.Get("web-01"));

        var result = _store.Delete("db", DiskRetention.Delete);
        Assert.Equal(new VmDeleteResult("db", null), result);
        Assert.False(_store.Exists("db"));
        Assert.Null(_store.TryGet("db"));
        Assert.Equal(new[] { "web-01" }, _store.ListNames());
        Assert.False(Directory.Exists(Path.Combine(_root.Path, "vms", "db")));
    }

    [Fact]
    public void Create_fails_if_the_vm_exists_and_names_it()
    {
        _store.Create(TestDefinitions.Minimal("dup"));
        var error = Assert.Throws<VmAlreadyExistsException>(() => _store.Create(TestDefinitions.Minimal("dup")));
        Assert.Equal("dup", error.VmName);
        Assert.Contains("'dup'", error.Message);
    }

    [Fact]
    public void Missing_vms_are_reported_by_name()
    {
        Assert.Equal("ghost", Assert.Throws<VmNotFoundException>(() => _store.Get("ghost")).VmName);
        Assert.Equal("ghost", Assert.Throws<VmNotFoundException>(() => _store.Update(TestDefinitions.Minimal("ghost"))).VmName);
        Assert.Equal("ghost", Assert.Throws<VmNotFoundException>(() => _store.Delete("ghost", DiskRetention.Delete)).VmName);
    }

    [Fact]
    public void Invalid_definitions_never_reach_disk()
    {
        var bad = TestDefinitions.Minimal("bad") with { Vcpus = new VcpuSettings(0, 1) };
        Assert.Throws<VmDefinitionException>(() => _store.Create(bad));
        Assert.Empty(_store.ListNames());
        Assert.Empty(Directory.GetFileSystemEntries(_store.VmsDirectory));
    }

    [Fact]
    public void Delete_keeping_disks_moves_them_to_retained_disks()
    {
        _store.Create(TestDefinitions.Minimal("keep"));
        File.WriteAllText(Path.Combine(_store.DiskDirectory("keep"), "disk0.raw"), "data");
        var result = _store.Delete("keep", DiskRetention.Keep);
        Assert.NotNull(result.RetainedDisksDirectory);
        Assert.StartsWith(Path.Combine(_root.Path, "retained-disks", "keep-"), result.RetainedDisksDirectory);
        Assert.Equal("data", File.ReadAllText(Path.Combine(result.RetainedDisksDirectory!, "disk0.raw")));
        Assert.False(_store.Exists("keep"));
        // The name is free again.
        _store.Create(TestDefinitions.Minimal("keep"));
    }

    [Fact]
    public void Path_helpers()
    {
        var vm = Path.Combine(_root.Path, "vms", "web");
        Assert.Equal(vm, _store.VmDirectory("web"));
        Assert.Equal(Path.Combine(vm, "vm.json"), _store.DefinitionPath("web"));
        Assert.Equal(Path.Combine(vm, "disks"), _store.DiskDirectory("web"));
        Assert.Equal(Path.Combine(vm, "serial.log"), _store.SerialLogPath("web"));
        Assert.Equal(Path.Combine(vm, "control.sock"), _store.SocketPath("web"));
        Assert.Equal(Path.Combine(vm, "vmm.pid"), _store.PidPath("web"));
        Assert.Equal(Path.Combine(vm, "disks", "a.raw"), _store.ResolveDiskPath("web", "a.raw"));
        Assert.Equal(Path.Combine(vm, "disks", "sub", "a.raw"), _store.ResolveDiskPath("web", "sub/./a.raw"));
        Assert.Equal("/srv/images/a.raw", _store.ResolveDiskPath("web", "/srv/images/../images/a.raw"));
    }

    [Fact]
    public void Socket_paths_longer_than_sun_path_are_rejected()
    {
        using var deep = new TempDirectory();
        var store = VmStore.Open(Path.Combine(deep.Path, new string('x', 60)));
        var error = Assert.Throws<VmStoreException>(() => store.SocketPath(new string('n', 40)));
        Assert.Contains("107 bytes", error.Message);
    }

    [Theory]
    [InlineData("..")]
    [InlineData("../etc")]
    [InlineData("../../etc/passwd")]
    [InlineData(".")]
    [InlineData("/etc")]
    [InlineData("a/../../b")]
    public void Names_that_escape_the_store_are_rejected_naming_the_path(string name)
    {
        var error = Assert.Throws<StorePathEscapeException>(() => _store.VmDirectory(name));
        Assert.Equal(name, error.Path);
        Assert.Contains($"'{name}'", error.Message);
        Assert.Throws<StorePathEscapeException>(() => _store.Get(name));
        Assert.Throws<StorePathEscapeException>(() => _store.Delete(name, DiskRetention.Delete));
    }

    [Theory]
    [InlineData(".tmp-x")]
    [InlineData("a/b")]
    [InlineData("with space")]
    public void Names_inside_the_store_must_still_be_valid_vm_names(string name) =>
        Assert.Equal("Name", Assert.Throws<VmDefinitionException>(() => _store.VmDirectory(name)).Property);

    [Theory]
    [InlineData("../escape.raw")]
    [InlineData("../../vms/other/disks/x.raw")]
    [InlineData("sub/../../x.raw")]
    [InlineData("..")]
    public void Relative_disk_paths_may_not_leave_the_disk_directory(string diskPath)
    {
        var error = Assert.Throws<StorePathEscapeException>(() => _store.ResolveDiskPath("web", diskPath));
        Assert.Equal(diskPath, error.Path);
        var definition = TestDefinitions.Minimal("web") with { Disks = new[] { new DiskDefinition(diskPath) } };
        Assert.Equal(diskPath, Assert.Throws<StorePathEscapeException>(() => _store.Create(definition)).Path);
        Assert.False(_store.Exists("web"));
    }

    [Fact]
    public void Relative_backing_images_are_checked_too()
    {
        var definition = TestDefinitions.Minimal("web") with
        {
            Disks = new[] { new DiskDefinition("a.qcow2", DiskFormat.Qcow2, 1L << 30, false, "../../base.qcow2") },
        };
        Assert.Equal("../../base.qcow2", Assert.Throws<StorePathEscapeException>(() => _store.Create(definition)).Path);
    }

    [Fact]
    public void Corrupt_definitions_are_reported_with_their_path()
    {
        _store.Create(TestDefinitions.Minimal("c"));
        File.WriteAllText(_store.DefinitionPath("c"), "{ \"name\": \"c\", \"bogus\": 1 }");
        var error = Assert.Throws<VmStoreCorruptException>(() => _store.Get("c"));
        Assert.Equal(_store.DefinitionPath("c"), error.Path);

        File.WriteAllText(_store.DefinitionPath("c"), VmDefinitionJson.Serialize(TestDefinitions.Minimal("other")));
        Assert.Contains("stored as 'c'", Assert.Throws<VmStoreCorruptException>(() => _store.Get("c")).Message);
    }

    [Fact]
    public void Updates_replace_the_file_atomically_leaving_no_temp_files()
    {
        _store.Create(TestDefinitions.Minimal("u"));
        for (var i = 0; i < 5; i++)
            _store.Update(TestDefinitions.Minimal("u") with { Notes = $"rev {i}" });
        Assert.Equal("rev 4", _store.Get("u").Notes);
        Assert.Equal(new[] { "disks", "vm.json" }, Directory.GetFileSystemEntries(_store.VmDirectory("u")).Select(Path.GetFileName).Order());
    }
}
