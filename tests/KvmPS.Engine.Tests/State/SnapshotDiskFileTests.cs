using KvmPS.State;
using Xunit;

namespace KvmPS.Engine.Tests.State;

/// <summary>disks.json (docs/snapshots.md): what snapshot.create records per qcow2 disk, read back exactly.</summary>
public class SnapshotDiskFileTests
{
    [Fact]
    public void RecordsRoundTripWithTheImagesTimeResolution()
    {
        string dir = Directory.CreateTempSubdirectory("kvd").FullName;
        try
        {
            var disks = new List<SnapshotDisk>
            {
                new("/var/lib/a.qcow2", "s1", new DateTime(2026, 12, 4, 22, 10, 0, DateTimeKind.Utc).AddTicks(1234567), 123_456_789_012UL),
                new("/var/lib/b c.qcow2", "snap \"2\"", DateTime.UnixEpoch, ulong.MaxValue),
            };
            File.WriteAllText(Path.Combine(dir, SnapshotDiskFile.FileName), SnapshotDiskFile.Encode(disks));
            var read = SnapshotDiskFile.Read(dir);
            Assert.Equal(disks, read);
            Assert.All(read, d => Assert.Equal(DateTimeKind.Utc, d.CreatedUtc.Kind));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ASnapshotWithoutTheFileHasNoDiskSnapshots()
    {
        string dir = Directory.CreateTempSubdirectory("kvd").FullName;
        try { Assert.Empty(SnapshotDiskFile.Read(dir)); }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("")]
    [InlineData("[]")]
    [InlineData("{\"disks\": [{\"path\": \"/a\", \"snapshot_id\": \"s1\", \"created_utc\": \"yesterday\", \"vm_clock_ns\": 1}]}")]
    [InlineData("{\"disks\": [{\"path\": \"/a\", \"snapshot_id\": \"s1\", \"created_utc\": \"2026-12-04T22:10:00.0000000Z\", \"vm_clock_ns\": -1}]}")]
    [InlineData("{\"disks\": [{\"snapshot_id\": \"s1\"}]}")]
    public void ABadFileIsRefusedNamingIt(string content)
    {
        string dir = Directory.CreateTempSubdirectory("kvd").FullName;
        try
        {
            string path = Path.Combine(dir, SnapshotDiskFile.FileName);
            File.WriteAllText(path, content);
            var e = Assert.Throws<SnapshotException>(() => SnapshotDiskFile.Read(dir));
            Assert.Equal(path, e.Path);
        }
        finally { Directory.Delete(dir, true); }
    }
}
