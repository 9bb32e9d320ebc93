using KvmPS.Storage.Qcow2;

namespace KvmPS.Storage.Tests;

/// <summary>Internal qcow2 snapshots through our own code: data round trips, API contract, typed errors.</summary>
public class Qcow2SnapshotTests
{
    private const int ClusterBytes = 4096;
    private const int DiskBytes = 1 << 20;

    private static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static string NewImage(TempDirectory dir, string name = "disk.qcow2", int sizeBytes = DiskBytes)
    {
        string path = dir.File(name);
        DiskImageFactory.CreateQcow2(path, (ulong)sizeBytes, new Qcow2CreateOptions { ClusterSizeBytes = ClusterBytes });
        return path;
    }

    [Fact]
    public void RevertBringsBackWhatWasWrittenBeforeTheSnapshot()
    {
        using var dir = new TempDirectory();
        string path = NewImage(dir);
        var a = Pattern(DiskBytes, 1);
        var b = Pattern(DiskBytes, 2);
        using var image = DiskImageFactory.OpenQcow2(path);
        image.Write(0, a);
        DateTime before = DateTime.UtcNow.AddSeconds(-1);
        var created = image.CreateSnapshot("vm-snap-1", "before upgrade", vmClockNs: 3_723_456_000_000, vmStateSizeBytes: 0);
        image.Write(0, b);
        RandomWorkload.AssertSame(image, b);

        image.RevertToSnapshot("vm-snap-1");
        RandomWorkload.AssertSame(image, a);

        Assert.Equal("vm-snap-1", created.Id);
        Assert.Equal("before upgrade", created.Name);
        Assert.Equal(3_723_456_000_000UL, created.VmClockNs);
        Assert.Equal((ulong)DiskBytes, created.DiskSizeBytes);
        Assert.Equal(DateTimeKind.Utc, created.CreatedUtc.Kind);
        Assert.InRange(created.CreatedUtc, before, DateTime.UtcNow.AddSeconds(1));
        Assert.Equal(created, Assert.Single(image.ListSnapshots()));
        Assert.True(image.HasSnapshot("vm-snap-1"));
        Assert.True(image.HasSnapshot("before upgrade"));
        Assert.Equal(created, image.FindSnapshot("before upgrade"));
    }

    [Fact]
    public void GuestWritesAfterASnapshotNeverReachTheSnapshot()
    {
        using var dir = new TempDirectory();
        string path = NewImage(dir);
        var a = Pattern(DiskBytes, 3);
        using var image = DiskImageFactory.OpenQcow2(path);
        image.Write(0, a);
        image.CreateSnapshot("s", "s");
        // Every kind of change to shared clusters: partial and whole-cluster writes, zeroing with
        // and without unmap, discard, and writes spanning several clusters.
        var model = (byte[])a.Clone();
        image.Write(100, new byte[] { 1, 2, 3 });
        model[100] = 1; model[101] = 2; model[102] = 3;
        image.Write(ClusterBytes * 3, Pattern(ClusterBytes, 4));
        Pattern(ClusterBytes, 4).CopyTo(model, ClusterBytes * 3);
        image.WriteZeroes(ClusterBytes * 5, ClusterBytes * 2, mayUnmap: false);
        model.AsSpan(ClusterBytes * 5, ClusterBytes * 2).Clear();
        image.WriteZeroes(ClusterBytes * 9, ClusterBytes, mayUnmap: true);
        model.AsSpan(ClusterBytes * 9, ClusterBytes).Clear();
        image.Discard(ClusterBytes * 12, ClusterBytes * 4);
        model.AsSpan(ClusterBytes * 12, ClusterBytes * 4).Clear();
        image.Write(ClusterBytes * 20 + 10, Pattern(ClusterBytes * 3, 5));
        Pattern(ClusterBytes * 3, 5).CopyTo(model, ClusterBytes * 20 + 10);
        RandomWorkload.AssertSame(image, model);

        image.RevertToSnapshot("s");
        RandomWorkload.AssertSame(image, a);
        // After a revert the active disk again shares everything with the snapshot: write and revert once more.
        image.Write(0, Pattern(DiskBytes, 6));
        image.RevertToSnapshot("s");
        RandomWorkload.AssertSame(image, a);
    }

    [Fact]
    public void SeveralSnapshotsKeepTheirOwnContentsAndDeleteFreesSpace()
    {
        using var dir = new TempDirectory();
        string path = NewImage(dir);
        var states = new List<byte[]>();
        var model = new byte[DiskBytes];
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            image.StrictMetadataOrdering = false;
            for (int i = 0; i < 4; i++)
            {
                RandomWorkload.Run(image, model, seed: 10 + i, operations: 40, discardGranularityBytes: ClusterBytes,
                    maxLengthBytes: 60_000, verifyEvery: 0);
                image.CreateSnapshot($"s{i}", $"state {i}", vmClockNs: (ulong)i * 1_000_000_000);
                states.Add((byte[])model.Clone());
            }
            Assert.Equal(new[] { "s0", "s1", "s2", "s3" }, image.ListSnapshots().Select(s => s.Id));
            for (int i = 3; i >= 0; i--)
            {
                image.RevertToSnapshot($"state {i}");
                RandomWorkload.AssertSame(image, states[i]);
            }
            image.DeleteSnapshot("s1");
            image.DeleteSnapshot("state 3");
            Assert.Equal(new[] { "s0", "s2" }, image.ListSnapshots().Select(s => s.Id));
            RandomWorkload.AssertSame(image, states[0]);
            image.RevertToSnapshot("s2");
            RandomWorkload.AssertSame(image, states[2]);
        }
        using (var reopened = DiskImageFactory.OpenQcow2(path))
        {
            Assert.Equal(new ulong[] { 0, 2_000_000_000 }, reopened.ListSnapshots().Select(s => s.VmClockNs));
            RandomWorkload.AssertSame(reopened, states[2]);
            reopened.RevertToSnapshot("s0");
            RandomWorkload.AssertSame(reopened, states[0]);
            reopened.DeleteSnapshot("s0");
            reopened.DeleteSnapshot("s2");
            Assert.Empty(reopened.ListSnapshots());
            // With no snapshot left every cluster is owned once again: a full overwrite allocates nothing new.
            long lengthBefore = new FileInfo(path).Length;
            reopened.Write(0, Pattern(DiskBytes, 7));
            Assert.Equal(lengthBefore, new FileInfo(path).Length);
        }
    }

    [Fact]
    public void SnapshotFieldsSurviveReopen()
    {
        using var dir = new TempDirectory();
        string path = NewImage(dir);
        DiskSnapshotInfo created;
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            image.Write(0, new byte[] { 42 });
            created = image.CreateSnapshot("id-ü", "name with spaces ✓", vmClockNs: 987_654_321, vmStateSizeBytes: 5UL << 32);
        }
        using var reopened = DiskImageFactory.OpenQcow2(path, readOnly: true);
        var listed = Assert.Single(reopened.ListSnapshots());
        Assert.Equal(created, listed);
        Assert.Equal(5UL << 32, listed.VmStateSizeBytes);
    }

    [Fact]
    public void QemuStyleNumericIdsAreAssignedAroundExistingIdsAndNames()
    {
        using var dir = new TempDirectory();
        using var image = DiskImageFactory.OpenQcow2(NewImage(dir));
        Assert.Equal("1", image.CreateSnapshot("first").Id);
        image.CreateSnapshot("7", "seven");
        Assert.Equal("8", image.CreateSnapshot("after seven").Id);
        image.CreateSnapshot("x", "9"); // a name that looks like the next ID
        Assert.Equal("10", image.CreateSnapshot("after nine").Id);
    }

    [Fact]
    public void DuplicateIdsAndNamesAreRefusedNamingImageAndSnapshot()
    {
        using var dir = new TempDirectory();
        string path = NewImage(dir);
        using var image = DiskImageFactory.OpenQcow2(path);
        image.CreateSnapshot("s1", "monday");
        var sameId = Assert.Throws<DiskSnapshotExistsException>(() => image.CreateSnapshot("s1", "tuesday"));
        Assert.Equal("s1", sameId.SnapshotId);
        Assert.Equal(path, sameId.Path);
        Assert.Contains(path, sameId.Message);
        Assert.Contains("'s1'", sameId.Message);
        var sameName = Assert.Throws<DiskSnapshotExistsException>(() => image.CreateSnapshot("s2", "monday"));
        Assert.Equal("monday", sameName.SnapshotId);
        Assert.Equal("s1", sameName.ExistingId);
        // An ID equal to another snapshot's name would make "ID or name" lookups ambiguous.
        Assert.Throws<DiskSnapshotExistsException>(() => image.CreateSnapshot("monday", "x"));
        Assert.Throws<DiskSnapshotExistsException>(() => image.CreateSnapshot("s1"));
        Assert.Single(image.ListSnapshots());
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("2")]
    [InlineData("99999999999999999999")]
    [InlineData("S1")]
    [InlineData(" s1")]
    [InlineData("")]
    public void UnknownIdsAreRefusedWithTheImageAndIdNamed(string id)
    {
        using var dir = new TempDirectory();
        string path = NewImage(dir);
        using var image = DiskImageFactory.OpenQcow2(path);
        image.Write(0, new byte[] { 1 });
        image.CreateSnapshot("s1", "one");
        Assert.False(image.HasSnapshot(id));
        Assert.Null(image.FindSnapshot(id));
        var revert = Assert.Throws<DiskSnapshotNotFoundException>(() => image.RevertToSnapshot(id));
        Assert.Equal(id, revert.SnapshotId);
        Assert.Equal(path, revert.Path);
        Assert.Contains(path, revert.Message);
        Assert.Contains("s1", revert.Message); // lists the IDs that do exist
        var delete = Assert.Throws<DiskSnapshotNotFoundException>(() => image.DeleteSnapshot(id));
        Assert.Equal(id, delete.SnapshotId);
        Assert.Single(image.ListSnapshots());
    }

    [Fact]
    public void InvalidIdsAndNamesAreRefusedBeforeAnythingIsWritten()
    {
        using var dir = new TempDirectory();
        string path = NewImage(dir);
        using var image = DiskImageFactory.OpenQcow2(path);
        image.Write(0, new byte[] { 1 });
        long length = new FileInfo(path).Length;
        Assert.Throws<ArgumentException>(() => image.CreateSnapshot("", "name"));
        Assert.Throws<ArgumentException>(() => image.CreateSnapshot("id", ""));
        Assert.Throws<ArgumentException>(() => image.CreateSnapshot(new string('x', 65_536), "name"));
        Assert.Throws<ArgumentException>(() => image.CreateSnapshot("id", new string('é', 40_000))); // 80,000 UTF-8 bytes
        Assert.Throws<ArgumentNullException>(() => image.CreateSnapshot(null!, "name"));
        Assert.Empty(image.ListSnapshots());
        Assert.Equal(length, new FileInfo(path).Length);
        // The longest legal ID works.
        string longest = new string('i', 65_535);
        Assert.Equal(longest, image.CreateSnapshot(longest, "n").Id);
        Assert.True(image.HasSnapshot(longest));
    }

    [Fact]
    public void ReadOnlyImagesRefuseSnapshotChangesNamingTheSnapshot()
    {
        using var dir = new TempDirectory();
        string path = NewImage(dir);
        DiskSnapshots.Create(path, "s1", "one");
        using var image = DiskImageFactory.OpenQcow2(path, readOnly: true);
        var create = Assert.Throws<DiskImageReadOnlyException>(() => image.CreateSnapshot("s2", "two"));
        Assert.Contains("'s2'", create.Message);
        Assert.Contains(path, create.Message);
        Assert.Contains("'s1'", Assert.Throws<DiskImageReadOnlyException>(() => image.RevertToSnapshot("s1")).Message);
        Assert.Contains("'s1'", Assert.Throws<DiskImageReadOnlyException>(() => image.DeleteSnapshot("s1")).Message);
        Assert.True(image.HasSnapshot("s1"));
    }

    [Fact]
    public void RefcountOverflowLeavesTheImageUntouched()
    {
        using var dir = new TempDirectory();
        string path = dir.File("rc1.qcow2");
        DiskImageFactory.CreateQcow2(path, DiskBytes, new Qcow2CreateOptions { ClusterSizeBytes = ClusterBytes, RefcountBits = 1 });
        using var image = DiskImageFactory.OpenQcow2(path);
        image.Write(0, Pattern(3 * ClusterBytes, 8));
        byte[] before = File.ReadAllBytes(path);
        var e = Assert.Throws<ImageCorruptException>(() => image.CreateSnapshot("s", "s"));
        Assert.Contains("refcount overflow", e.Message);
        Assert.Contains(path, e.Message);
        Assert.Empty(image.ListSnapshots());
        Assert.Equal(before, File.ReadAllBytes(path));
    }

    [Fact]
    public void ByPathHelpersWorkOnClosedImagesAndRespectLocks()
    {
        using var dir = new TempDirectory();
        string path = NewImage(dir);
        var a = Pattern(DiskBytes, 9);
        using (var image = DiskImageFactory.Open(path))
        {
            image.Write(0, a);
            // While a VMM has the image open, management must not touch it.
            Assert.Throws<ImageInUseException>(() => DiskSnapshots.Create(path, "s", "s"));
            Assert.Throws<ImageInUseException>(() => DiskSnapshots.List(path));
            // Listing a running VM's disk is possible when the caller accepts a possibly stale answer.
            image.RequireSnapshots().CreateSnapshot("live", "live");
            Assert.Equal("live", Assert.Single(DiskSnapshots.List(path, forceShare: true)).Id);
            image.RequireSnapshots().DeleteSnapshot("live");
        }
        var created = DiskSnapshots.Create(path, "s", "offline", vmClockNs: 5);
        Assert.Equal(created, Assert.Single(DiskSnapshots.List(path)));
        Assert.True(DiskSnapshots.Has(path, "offline"));
        Assert.Equal(created, DiskSnapshots.Find(path, "s"));
        using (var image = DiskImageFactory.Open(path))
        {
            image.Write(0, Pattern(DiskBytes, 10));
        }
        DiskSnapshots.Revert(path, "offline");
        using (var image = DiskImageFactory.Open(path, readOnly: true))
        {
            RandomWorkload.AssertSame(image, a);
        }
        Assert.Throws<DiskSnapshotNotFoundException>(() => DiskSnapshots.Delete(path, "nope"));
        DiskSnapshots.Delete(path, "s");
        Assert.Empty(DiskSnapshots.List(path));
        Assert.Throws<DiskImageException>(() => DiskSnapshots.List(dir.File("missing.qcow2")));
    }

    [Fact]
    public void ByPathHelpersDoNotNeedTheBackingFile()
    {
        using var dir = new TempDirectory();
        string basePath = NewImage(dir, "base.qcow2");
        using (var b = DiskImageFactory.Open(basePath))
        {
            b.Write(0, Pattern(DiskBytes, 11));
        }
        string top = dir.File("top.qcow2");
        DiskImageFactory.CreateQcow2(top, 0, new Qcow2CreateOptions { BackingFile = "base.qcow2", ClusterSizeBytes = ClusterBytes });
        DiskSnapshots.Create(top, "s", "s");
        File.Move(basePath, dir.File("moved.qcow2"));
        Assert.True(DiskSnapshots.Has(top, "s"));
        DiskSnapshots.Revert(top, "s");
        DiskSnapshots.Delete(top, "s");
        Assert.Empty(DiskSnapshots.List(top));
    }

    [Fact]
    public void RawImagesSayClearlyThatTheyCannotSnapshot()
    {
        using var dir = new TempDirectory();
        string path = dir.File("disk.raw");
        DiskImageFactory.CreateRaw(path, DiskBytes);
        using (var raw = DiskImageFactory.Open(path))
        {
            Assert.IsNotAssignableFrom<ISnapshotableBlockBackend>(raw);
            var e = Assert.Throws<DiskSnapshotsNotSupportedException>(() => raw.RequireSnapshots());
            Assert.Equal(path, e.Path);
            Assert.Equal(DiskImageFormat.Raw, e.Format);
            Assert.Contains(path, e.Message);
            Assert.Contains("raw", e.Message);
        }
        Assert.Throws<DiskSnapshotsNotSupportedException>(() => DiskSnapshots.Create(path, "s", "s"));
        Assert.Throws<DiskSnapshotsNotSupportedException>(() => DiskSnapshots.Revert(path, "s"));
        Assert.Empty(DiskSnapshots.List(path));
        Assert.False(DiskSnapshots.Has(path, "s"));

        string qcow = NewImage(dir);
        using var image = DiskImageFactory.Open(qcow);
        Assert.Same(image, image.RequireSnapshots());
    }
}
