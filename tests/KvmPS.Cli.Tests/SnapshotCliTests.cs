using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.Snapshots;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Cli.Tests;

/// <summary>kvmps vm snapshot/save/export/import in-process, on VMs that are off (no VMM needed for these paths).</summary>
public sealed class SnapshotCliTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly VmStore _store;
    private readonly VmManager _manager;

    public SnapshotCliTests()
    {
        _store = VmStore.Open(Path.Combine(_dir.Path, "store"));
        _manager = new VmManager(_store, new VmmProcessLauncher("/nonexistent/kvmps-vmm")) { DiskSnapshots = new RecordingDiskSnapshots() };
        _store.Create(TestDefinitions.Minimal("web") with
        {
            Disks = new[] { new DiskDefinition("root.qcow2", DiskFormat.Qcow2, null) },
            NetworkAdapters = new[] { new NetworkAdapterDefinition("tap0", null, MacAddress.Parse("52:54:00:00:00:01")) },
        });
        File.WriteAllText(_store.ResolveDiskPath("web", "root.qcow2"), "disk");
    }

    public void Dispose() => _dir.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_manager, "", args);

    [Fact]
    public void Create_list_restore_remove()
    {
        var (code, output, error) = Run("vm", "snapshot", "create", "web", "s1");
        Assert.True(code == 0, error);
        Assert.Contains("checkpoint 's1' taken (disks only", output);
        Assert.Equal(0, Run("vm", "snapshot", "create", "web", "s2").Code);

        (code, output, _) = Run("vm", "snapshot", "list", "web", "--json");
        Assert.Equal(0, code);
        using (var json = JsonDocument.Parse(output))
        {
            var items = json.RootElement.EnumerateArray().ToList();
            Assert.Equal(["s1", "s2"], items.Select(i => i.GetProperty("name").GetString()));
            Assert.Equal("s1", items[1].GetProperty("parentName").GetString());
            Assert.False(items[0].GetProperty("includesMemory").GetBoolean());
        }
        (code, output, _) = Run("vm", "snapshot", "list", "web");
        Assert.Contains("DiskOnly", output);
        Assert.Contains("NAME", output);

        (code, _, error) = Run("vm", "snapshot", "create", "web", "s1");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("already has a checkpoint named 's1'", error);

        (code, output, _) = Run("vm", "snapshot", "restore", "web", "s1");
        Assert.Equal(0, code);
        Assert.Contains("restored to checkpoint 's1'; it is Off", output);

        (code, _, error) = Run("vm", "snapshot", "restore", "web", "nope");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("no checkpoint named 'nope'", error);

        (code, output, _) = Run("vm", "snapshot", "remove", "web", "s1", "--include-children");
        Assert.Equal(0, code);
        Assert.Contains("'s1' removed", output);
        Assert.Contains("'s2' removed", output);
        Assert.Contains("no checkpoints", Run("vm", "snapshot", "list", "web").Out);
    }

    [Fact]
    public void Errors_have_their_exit_codes()
    {
        Assert.Equal(ExitCodes.VmNotFound, Run("vm", "snapshot", "create", "nope").Code);
        Assert.Equal(ExitCodes.Usage, Run("vm", "snapshot", "restore", "web").Code);
        Assert.Equal(ExitCodes.Usage, Run("vm", "snapshot", "frobnicate", "web").Code);
        Assert.Equal(ExitCodes.Usage, Run("vm", "import", "a", "--bogus").Code);
        var (code, _, error) = Run("vm", "save", "web");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("only a running or paused VM can be saved", error);

        _manager.Checkpoint("web", "s1");
        var metadata = Path.Combine(_manager.GetSnapshot("web", "s1").Directory, "snapshot.json");
        File.WriteAllText(metadata, "garbage");
        (code, _, error) = Run("vm", "snapshot", "list", "web");
        Assert.Equal(ExitCodes.Environment, code);
        Assert.Contains(metadata, error);
    }

    [Fact]
    public void Export_and_import_a_clone()
    {
        var target = Path.Combine(_dir.Path, "out");
        var (code, output, error) = Run("vm", "export", "web", target, "--json");
        Assert.True(code == 0, error);
        using (var json = JsonDocument.Parse(output))
            Assert.Equal(Path.Combine(target, "web"), json.RootElement.GetProperty("path").GetString());

        (code, _, error) = Run("vm", "import", Path.Combine(target, "web"), "--copy");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("'web'", error);

        _manager.Remove("web");
        (code, output, error) = Run("vm", "import", Path.Combine(target, "web"), "--copy", "--new-id");
        Assert.True(code == 0, error);
        Assert.Contains("imported (copied) with new MAC addresses", output);
        Assert.NotEqual(MacAddress.Parse("52:54:00:00:00:01"), _store.Get("web").NetworkAdapters[0].MacAddress);
        Assert.True(Directory.Exists(Path.Combine(target, "web")));
    }

    [Fact]
    public void Vm_remove_with_kept_disks_deletes_the_checkpoints_snapshots_from_them()
    {
        var (code, _, error) = Run("vm", "snapshot", "create", "web", "s1");
        Assert.True(code == 0, error);
        var disk = _store.ResolveDiskPath("web", "root.qcow2");
        var id = _manager.GetSnapshot("web", "s1").Id;
        var recording = (RecordingDiskSnapshots)_manager.DiskSnapshots!;
        Assert.True(recording.Exists(disk, id));

        (code, var output, error) = Run("vm", "remove", "web", "--keep-disks", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var removed = Assert.Single(json.RootElement.GetProperty("removedDiskSnapshots").EnumerateArray());
        Assert.Equal(disk, removed.GetProperty("path").GetString());
        Assert.Equal(id, removed.GetProperty("snapshotId").GetString());
        Assert.False(recording.Exists(disk, id));
        Assert.Contains($"delete {disk} {id}", recording.Calls);
    }

    [Fact]
    public void Help_texts_name_the_new_commands()
    {
        Assert.Contains("vm snapshot create|list|restore|remove", Run("--help").Out);
        var (code, output, _) = Run("vm", "snapshot", "--help");
        Assert.Equal(0, code);
        Assert.Contains("restore NAME SNAPSHOT", output);
        Assert.Contains("--new-id", Run("vm", "import", "--help").Out);
        Assert.Contains("resumes it", Run("help", "vm save").Out);
        Assert.Contains("DIR/NAME", Run("vm", "export", "-h").Out);
    }
}
