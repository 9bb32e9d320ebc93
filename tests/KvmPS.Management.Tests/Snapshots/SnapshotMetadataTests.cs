using KvmPS.Management.Snapshots;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Snapshots;

public sealed class SnapshotMetadataTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Folder(string id)
    {
        var folder = Path.Combine(_dir.Path, id);
        Directory.CreateDirectory(Path.Combine(folder, "vmm"));
        return folder;
    }

    private static VmSnapshot Sample(string id) => new()
    {
        VmName = "web",
        Name = "before upgrade: 12/04/2026",
        Id = id,
        CreationTimeUtc = new DateTime(2026, 12, 4, 20, 51, 3, 250, DateTimeKind.Utc),
        ParentId = "0123",
        SizeBytes = 4096,
        IncludesMemory = true,
        VmState = "Paused",
        DiskSnapshots = [new DiskSnapshotRef("/tmp/x/root.qcow2", id)],
    };

    [Fact]
    public void Round_trip_keeps_every_field()
    {
        var folder = Folder("abc");
        var path = Path.Combine(folder, "snapshot.json");
        File.WriteAllBytes(path, SnapshotMetadataJson.Serialize(Sample("abc")));
        var read = SnapshotMetadataJson.ReadSnapshot("web", path, "abc");
        Assert.Equal(Sample("abc") with { Directory = folder, DiskSnapshots = read.DiskSnapshots }, read);
        Assert.Equal(Sample("abc").DiskSnapshots, read.DiskSnapshots);
        Assert.Equal(DateTimeKind.Utc, read.CreationTimeUtc.Kind);
    }

    [Theory]
    [InlineData("{", "not valid JSON")]
    [InlineData("[]", "not a JSON object")]
    [InlineData("""{"format_version":2}""", "format version 2")]
    [InlineData("""{"format_version":1,"id":"other","disk_snapshots":[]}""", "does not match its folder")]
    [InlineData("""{"format_version":1,"id":"abc","disk_snapshots":[{"path":"/d"}]}""", "disk_snapshots[0].snapshot_id")]
    [InlineData("""{"format_version":1,"id":"abc","disk_snapshots":[],"vm_name":"web","name":"n","creation_time_utc":"yesterday"}""", "'creation_time_utc' value 'yesterday'")]
    [InlineData("""{"format_version":1,"id":"abc","disk_snapshots":[],"vm_name":"web","name":"n","creation_time_utc":"2026-12-04T20:00:00Z","size_bytes":-1}""", "size_bytes")]
    [InlineData("""{"format_version":1,"id":"abc","disk_snapshots":[],"vm_name":"web","name":"n","creation_time_utc":"2026-12-04T20:00:00Z","size_bytes":1,"includes_memory":true,"vm_state":"Crashed"}""", "'vm_state' value 'Crashed'")]
    [InlineData("""{"format_version":1,"id":"abc","disk_snapshots":[],"vm_name":"db","name":"n","creation_time_utc":"2026-12-04T20:00:00Z","size_bytes":1,"includes_memory":true,"vm_state":"Running"}""", "belongs to VM 'db'")]
    public void Corrupt_metadata_is_a_typed_error_naming_the_file(string json, string reason)
    {
        var folder = Folder("abc");
        var path = Path.Combine(folder, "snapshot.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<SnapshotMetadataCorruptException>(() => SnapshotMetadataJson.ReadSnapshot("web", path, "abc"));
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        Assert.Contains(reason, e.Message);
        Assert.Equal("web", e.VmName);
    }

    [Fact]
    public void Metadata_with_memory_but_without_the_vmm_folder_is_corrupt()
    {
        var folder = Path.Combine(_dir.Path, "abc");
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, "snapshot.json");
        File.WriteAllBytes(path, SnapshotMetadataJson.Serialize(Sample("abc")));
        var e = Assert.Throws<SnapshotMetadataCorruptException>(() => SnapshotMetadataJson.ReadSnapshot("web", path, "abc"));
        Assert.Contains(Path.Combine(folder, "vmm"), e.Message);
    }

    [Fact]
    public void Saved_state_round_trip_and_missing_file()
    {
        var folder = Folder("saved");
        var path = Path.Combine(folder, "saved.json");
        var saved = new VmSavedState { VmName = "web", CreationTimeUtc = new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc), SizeBytes = 7, VmState = "Running" };
        File.WriteAllBytes(path, SnapshotMetadataJson.Serialize(saved));
        Assert.Equal(saved with { Directory = folder }, SnapshotMetadataJson.ReadSaved("web", path));
        File.Delete(path);
        var e = Assert.Throws<SnapshotMetadataCorruptException>(() => SnapshotMetadataJson.ReadSaved("web", path));
        Assert.Contains("missing", e.Message);
    }
}
