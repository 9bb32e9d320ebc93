using KvmPS.Storage.Qcow2;

namespace KvmPS.Storage.Tests;

public class Qcow2ImageTests
{
    private static byte[] RandomBytes(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Theory]
    [InlineData(65536, 16)]
    [InlineData(512, 16)]   // tiny clusters: many L2 tables, refcount blocks and refcount-table growth
    [InlineData(4096, 1)]
    [InlineData(4096, 4)]
    [InlineData(2048, 64)]
    [InlineData(1 << 21, 8)]
    public void RandomWorkloadMatchesModelAndSurvivesReopen(long clusterSize, int refcountBits)
    {
        using var dir = new TempDirectory();
        string path = dir.File("disk.qcow2");
        const int size = 6 << 20;
        DiskImageFactory.CreateQcow2(path, size, new Qcow2CreateOptions { ClusterSizeBytes = clusterSize, RefcountBits = refcountBits });
        var model = new byte[size];
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            image.StrictMetadataOrdering = false;
            Assert.Equal(clusterSize, image.ClusterSizeBytes);
            Assert.Equal(refcountBits, image.RefcountBits);
            RandomWorkload.Run(image, model, seed: (int)clusterSize + refcountBits, operations: 250,
                discardGranularityBytes: clusterSize, maxLengthBytes: 100_000);
        }
        using (var reopened = DiskImageFactory.Open(path, readOnly: true))
        {
            RandomWorkload.AssertSame(reopened, model);
        }
    }

    [Fact]
    public void UnwrittenImageReadsZeroAndStaysSmall()
    {
        using var dir = new TempDirectory();
        string path = dir.File("empty.qcow2");
        DiskImageFactory.CreateQcow2(path, 10UL << 30);
        Assert.True(new FileInfo(path).Length <= 4 * 65536);
        using var image = DiskImageFactory.Open(path);
        Assert.IsType<Qcow2Image>(image);
        Assert.Equal(10UL << 30, image.SizeBytes);
        var buffer = RandomBytes(1 << 20, 1);
        image.Read((5UL << 30) - 1000, buffer);
        Assert.All(buffer, b => Assert.Equal(0, b));
    }

    [Fact]
    public void BackingChainReadsAndCopyOnWrite()
    {
        using var dir = new TempDirectory();
        string basePath = dir.File("base.raw"), midPath = dir.File("mid.qcow2"), topPath = dir.File("top.qcow2");
        const int size = 2 << 20;
        var baseData = RandomBytes(size, 2);
        DiskImageFactory.CreateRaw(basePath, size);
        using (var b = DiskImageFactory.Open(basePath))
        {
            b.Write(0, baseData);
        }
        DiskImageFactory.CreateQcow2(midPath, 0, new Qcow2CreateOptions { BackingFile = "base.raw", BackingFormat = DiskImageFormat.Raw });
        var expected = (byte[])baseData.Clone();
        using (var mid = DiskImageFactory.Open(midPath))
        {
            Assert.Equal((ulong)size, mid.SizeBytes);
            var patch = RandomBytes(3000, 3);
            mid.Write(70_000, patch); // partial cluster: copy-on-write must keep the rest from base
            patch.CopyTo(expected, 70_000);
            RandomWorkload.AssertSame(mid, expected);
        }
        DiskImageFactory.CreateQcow2(topPath, 0, new Qcow2CreateOptions { BackingFile = midPath });
        using (var top = DiskImageFactory.OpenQcow2(topPath))
        {
            Assert.Equal("qcow2", top.BackingFormat);
            RandomWorkload.AssertSame(top, expected);
            var patch = RandomBytes(100, 4);
            top.Write(131_000, patch);
            patch.CopyTo(expected, 131_000);
            // Zeroing a whole cluster must hide the backing data (zero flag), not expose it.
            top.WriteZeroes(196_608, 65_536, mayUnmap: true);
            expected.AsSpan(196_608, 65_536).Clear();
            // Discard over a cluster with backing data reads as zero too (v3 zero flag).
            top.Write(0, new byte[] { 1, 2, 3 });
            top.Discard(0, 65_536);
            expected.AsSpan(0, 65_536).Clear();
            RandomWorkload.AssertSame(top, expected);
        }
        // The base stays untouched.
        Assert.Equal(baseData, File.ReadAllBytes(basePath));
        // Backing files are opened read-only and locked only for reading, so two overlays can share one.
        using var again = DiskImageFactory.Open(topPath, readOnly: true);
        using var other = DiskImageFactory.Open(midPath, readOnly: true);
        RandomWorkload.AssertSame(again, expected);
    }

    [Fact]
    public void WriteZeroesWithoutUnmapKeepsAllocation()
    {
        using var dir = new TempDirectory();
        string path = dir.File("z.qcow2");
        DiskImageFactory.CreateQcow2(path, 1 << 20);
        using var image = DiskImageFactory.OpenQcow2(path);
        image.Write(0, RandomBytes(1 << 20, 5));
        long before = new FileInfo(path).Length;
        image.WriteZeroes(0, 1 << 19, mayUnmap: false);
        image.WriteZeroes(1 << 19, 1 << 19, mayUnmap: true);
        var buffer = new byte[1 << 20];
        image.Read(0, buffer);
        Assert.All(buffer, b => Assert.Equal(0, b));
        Assert.Equal(before, new FileInfo(path).Length);
        // Writing into a zero-flagged, still-allocated cluster works.
        image.Write(100, new byte[] { 9 });
        image.Read(0, buffer.AsSpan(0, 200));
        Assert.Equal(9, buffer[100]);
        Assert.Equal(0, buffer[99]);
    }

    [Fact]
    public void SnapshotsCreateRevertDelete()
    {
        using var dir = new TempDirectory();
        string path = dir.File("snap.qcow2");
        const int size = 1 << 20;
        DiskImageFactory.CreateQcow2(path, size, new Qcow2CreateOptions { ClusterSizeBytes = 4096 });
        var v1 = RandomBytes(size, 6);
        var v2 = (byte[])v1.Clone();
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            image.Write(0, v1);
            var s1 = image.CreateSnapshot("first");
            Assert.Equal("1", s1.Id);
            var patch = RandomBytes(10_000, 7);
            image.Write(5_000, patch);
            patch.CopyTo(v2, 5_000);
            image.Discard(200_704, 4096 * 3);
            v2.AsSpan(200_704, 4096 * 3).Clear();
            var s2 = image.CreateSnapshot("second");
            Assert.Equal("2", s2.Id);
            Assert.Throws<DiskSnapshotExistsException>(() => image.CreateSnapshot("second"));
            image.Write(0, new byte[size]);

            image.RevertToSnapshot("first");
            RandomWorkload.AssertSame(image, v1);
            image.RevertToSnapshot("2");
            RandomWorkload.AssertSame(image, v2);
            image.DeleteSnapshot("first");
            Assert.Equal(new[] { "second" }, image.ListSnapshots().Select(s => s.Name));
            RandomWorkload.AssertSame(image, v2);
            // After deleting the only other owner, writes in place must work again.
            image.DeleteSnapshot("second");
            image.Write(0, v1);
            RandomWorkload.AssertSame(image, v1);
            Assert.Throws<DiskSnapshotNotFoundException>(() => image.RevertToSnapshot("nope"));
        }
        using var reopened = DiskImageFactory.OpenQcow2(path, readOnly: true);
        Assert.Empty(reopened.ListSnapshots());
        RandomWorkload.AssertSame(reopened, v1);
    }

    [Fact]
    public void RefcountOverflowIsReported()
    {
        using var dir = new TempDirectory();
        string path = dir.File("rc1.qcow2");
        DiskImageFactory.CreateQcow2(path, 1 << 20, new Qcow2CreateOptions { ClusterSizeBytes = 4096, RefcountBits = 1 });
        using var image = DiskImageFactory.OpenQcow2(path);
        image.Write(0, new byte[] { 1 });
        var e = Assert.Throws<ImageCorruptException>(() => image.CreateSnapshot("s"));
        Assert.Contains("refcount overflow", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void ConcurrentCallersAreSerialised()
    {
        using var dir = new TempDirectory();
        string path = dir.File("mt.qcow2");
        const int size = 4 << 20;
        DiskImageFactory.CreateQcow2(path, size, new Qcow2CreateOptions { ClusterSizeBytes = 4096 });
        using var image = DiskImageFactory.OpenQcow2(path);
        image.StrictMetadataOrdering = false;
        // Each thread owns a disjoint quarter, so the expected content is deterministic.
        var model = new byte[size];
        Parallel.For(0, 4, t =>
        {
            var random = new Random(t);
            var buffer = new byte[9000];
            for (int i = 0; i < 200; i++)
            {
                int offset = t * (size / 4) + random.Next(0, size / 4 - buffer.Length);
                random.NextBytes(buffer);
                image.Write((ulong)offset, buffer);
                lock (model)
                {
                    buffer.CopyTo(model, offset);
                }
            }
        });
        RandomWorkload.AssertSame(image, model);
    }
}
