using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Snapshots;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Snapshots;

public sealed class ExportImportTests : IDisposable
{
    private static readonly MacAddress Mac = MacAddress.Parse("52:54:00:aa:bb:cc");
    private readonly TempDirectory _dir = new();
    private readonly VmStore _source;
    private readonly VmStore _target;
    private readonly RecordingDiskSnapshots _disks = new();
    private readonly VmManager _from;
    private readonly VmManager _to;
    private readonly string _external;

    public ExportImportTests()
    {
        _source = VmStore.Open(Path.Combine(_dir.Path, "a"));
        _target = VmStore.Open(Path.Combine(_dir.Path, "b"));
        _from = new VmManager(_source, new VmmProcessLauncher("/nonexistent/kvmps-vmm")) { DiskSnapshots = _disks };
        _to = new VmManager(_target, new VmmProcessLauncher("/nonexistent/kvmps-vmm")) { DiskSnapshots = _disks };
        _external = Path.Combine(_dir.Path, "outside", "data.qcow2");
        Directory.CreateDirectory(Path.GetDirectoryName(_external)!);
        File.WriteAllText(_external, "external disk");
        _source.Create(TestDefinitions.Minimal("web") with
        {
            Disks = new[] { new DiskDefinition("root.qcow2", DiskFormat.Qcow2, null), new DiskDefinition(_external, DiskFormat.Qcow2, null) },
            NetworkAdapters = new[] { new NetworkAdapterDefinition("tap0", null, Mac) },
        });
        File.WriteAllText(_source.ResolveDiskPath("web", "root.qcow2"), "root disk");
    }

    public void Dispose() => _dir.Dispose();

    /// <summary>A checkpoint with memory as the VMM would leave it: its config.json names the disks, the MAC, the vsock CID and the old store.</summary>
    private VmSnapshot CheckpointWithVmmConfig()
    {
        var snapshot = _from.Checkpoint("web", "s1");
        var vmm = Path.Combine(snapshot.Directory, "vmm");
        Directory.CreateDirectory(vmm);
        var root = _source.ResolveDiskPath("web", "root.qcow2");
        File.WriteAllText(Path.Combine(vmm, "config.json"), $$"""
            {"memory":"268435456","devices":[
              {"type":"block","path":"{{root}}","format":"qcow2"},
              {"type":"block","path":"{{_external}}","format":"qcow2"},
              {"type":"net","tap":"tap0","mac":"{{Mac}}"},
              {"type":"vsock","guest_cid":42,"uds_path":"{{_source.VmDirectory("web")}}/vsock.sock"}],
             "serial":"file:{{_source.SerialLogPath("web")}}","control_socket":"{{_source.SocketPath("web")}}"}
            """);
        File.WriteAllBytes(Path.Combine(vmm, "memory.bin"), new byte[4096]);
        return snapshot;
    }

    [Fact]
    public void Export_then_import_as_a_clone_moves_paths_and_gives_new_MAC_and_CID()
    {
        var snapshot = CheckpointWithVmmConfig();
        var export = Path.Combine(_dir.Path, "export");
        var result = _from.Export("web", export);
        Assert.Equal(Path.Combine(export, "web"), result.Path);
        Assert.Equal(1, result.Snapshots);
        Assert.Equal("external disk", File.ReadAllText(Path.Combine(result.Path, "disks", "data.qcow2")));
        Assert.Empty(Directory.EnumerateDirectories(export, ".*"));

        var imported = _to.Import(result.Path, copy: true, generateNewId: true);
        Assert.Equal("web", imported.Name);
        Assert.True(Directory.Exists(result.Path)); // -Copy keeps the export
        var definition = _target.Get("web");
        Assert.Equal("data.qcow2", definition.Disks[1].Path);
        Assert.Equal("external disk", File.ReadAllText(_target.ResolveDiskPath("web", "data.qcow2")));
        var newMac = definition.NetworkAdapters[0].MacAddress;
        Assert.NotEqual(Mac, newMac);

        var copied = _to.GetSnapshot("web", "s1");
        Assert.Equal(snapshot.Id, copied.Id);
        Assert.All(copied.DiskSnapshots, d => Assert.StartsWith(_target.VmDirectory("web") + "/", d.Path));
        Assert.Equal(newMac, _target.Get("web").NetworkAdapters[0].MacAddress);
        using var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(copied.Directory, "vmm", "config.json")));
        var devices = config.RootElement.GetProperty("devices");
        Assert.Equal(_target.ResolveDiskPath("web", "root.qcow2"), devices[0].GetProperty("path").GetString());
        Assert.Equal(_target.ResolveDiskPath("web", "data.qcow2"), devices[1].GetProperty("path").GetString());
        Assert.Equal(newMac.ToString(), devices[2].GetProperty("mac").GetString());
        var cid = devices[3].GetProperty("guest_cid").GetUInt64();
        Assert.NotEqual(42UL, cid);
        Assert.InRange(cid, 3UL, uint.MaxValue - 1UL);
        Assert.Equal(_target.VmDirectory("web") + "/vsock.sock", devices[3].GetProperty("uds_path").GetString());
        Assert.Equal("file:" + _target.SerialLogPath("web"), config.RootElement.GetProperty("serial").GetString());
        Assert.Equal("268435456", config.RootElement.GetProperty("memory").GetString());
        // The definition stored with the checkpoint is the clone's too (restoring it must not bring the old MAC back).
        Assert.Equal(newMac, VmDefinitionJson.Deserialize(File.ReadAllBytes(Path.Combine(copied.Directory, "vm.json"))).NetworkAdapters[0].MacAddress);

        var conflict = Assert.Throws<VmAlreadyExistsException>(() => _to.Import(result.Path, copy: true));
        Assert.Contains("'web'", conflict.Message);
    }

    [Fact]
    public void Import_without_copy_moves_and_keeps_identity()
    {
        CheckpointWithVmmConfig();
        var result = _from.Export("web", Path.Combine(_dir.Path, "export"));
        _to.Import(Path.Combine(_dir.Path, "export")); // the folder holding one exported VM is enough
        Assert.False(Directory.Exists(result.Path));
        Assert.Equal(Mac, _target.Get("web").NetworkAdapters[0].MacAddress);
        using var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(_to.GetSnapshot("web", "s1").Directory, "vmm", "config.json")));
        Assert.Equal(42, config.RootElement.GetProperty("devices")[3].GetProperty("guest_cid").GetInt32());
    }

    [Fact]
    public void Export_refuses_a_target_that_is_not_empty()
    {
        var target = Path.Combine(_dir.Path, "export", "web");
        Directory.CreateDirectory(target);
        File.WriteAllText(Path.Combine(target, "x"), "");
        var e = Assert.Throws<VmExportException>(() => _from.Export("web", Path.Combine(_dir.Path, "export")));
        Assert.Equal(target, e.Path);
    }

    [Fact]
    public void Import_of_a_corrupt_export_names_the_file_and_leaves_nothing()
    {
        var snapshot = CheckpointWithVmmConfig();
        var result = _from.Export("web", Path.Combine(_dir.Path, "export"));
        var metadata = Path.Combine(result.Path, "snapshots", snapshot.Id, "snapshot.json");
        File.WriteAllText(metadata, "{\"format_version\":1}");
        var e = Assert.Throws<SnapshotMetadataCorruptException>(() => _to.Import(result.Path, copy: true));
        Assert.Contains(Path.Combine("snapshots", snapshot.Id, "snapshot.json"), e.Path);
        Assert.Empty(Directory.EnumerateFileSystemEntries(_target.VmsDirectory));

        File.Delete(Path.Combine(result.Path, VmManager.ExportManifestFileName));
        var missing = Assert.Throws<VmImportException>(() => _to.Import(result.Path, copy: true));
        Assert.EndsWith("export.json", missing.Path);
        Assert.Empty(Directory.EnumerateFileSystemEntries(_target.VmsDirectory));

        var nothing = Assert.Throws<VmImportException>(() => _to.Import(Path.Combine(_dir.Path, "nowhere")));
        Assert.Contains("does not exist", nothing.Message);
    }

    [Fact]
    public void Export_carries_saved_state()
    {
        var snapshots = new SnapshotStore(_source);
        var staging = snapshots.CreateSavedStaging("web");
        Directory.CreateDirectory(Path.Combine(staging, "vmm"));
        File.WriteAllText(Path.Combine(staging, "vmm", "config.json"), $$"""{"control_socket":"{{_source.SocketPath("web")}}"}""");
        snapshots.CommitSaved(staging, new VmSavedState { VmName = "web", CreationTimeUtc = DateTime.UtcNow, VmState = "Running" });

        var result = _from.Export("web", Path.Combine(_dir.Path, "export"));
        Assert.True(result.IncludesSavedState);
        Assert.Equal(VmState.Saved, _to.Import(result.Path, copy: true).State);
        Assert.Contains(_target.SocketPath("web"), File.ReadAllText(Path.Combine(_target.VmDirectory("web"), "saved", "vmm", "config.json")));
    }
}
