using KvmPS.Storage.Raw;

namespace KvmPS.Storage.Tests;

public class RawImageTests
{
    [Fact]
    public void RandomWorkloadMatchesModelAndPersists()
    {
        using var dir = new TempDirectory();
        string path = dir.File("disk.raw");
        const int size = 4 << 20;
        DiskImageFactory.CreateRaw(path, size);
        var model = new byte[size];
        using (var image = DiskImageFactory.Open(path))
        {
            Assert.IsType<RawImage>(image);
            RandomWorkload.Run(image, model, seed: 1, operations: 300, discardGranularityBytes: 4096);
        }
        Assert.Equal(model, File.ReadAllBytes(path));
    }

    [Fact]
    public void CreatedImageIsSparse()
    {
        using var dir = new TempDirectory();
        string path = dir.File("sparse.raw");
        DiskImageFactory.CreateRaw(path, 1UL << 30);
        Assert.Equal(1L << 30, new FileInfo(path).Length);
        using var image = DiskImageFactory.Open(path, DiskImageFormat.Raw);
        Assert.Equal(1UL << 30, image.SizeBytes);
    }

    [Fact]
    public void SizeNotMultipleOf512IsRejectedNamingTheFile()
    {
        using var dir = new TempDirectory();
        string path = dir.File("odd.raw");
        File.WriteAllBytes(path, new byte[1000]);
        var e = Assert.Throws<DiskImageException>(() => DiskImageFactory.Open(path, DiskImageFormat.Raw));
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        Assert.Contains("512", e.Message);
    }

    [Fact]
    public void ReadOnlyImageRefusesWrites()
    {
        using var dir = new TempDirectory();
        string path = dir.File("ro.raw");
        DiskImageFactory.CreateRaw(path, 1 << 20);
        using var image = DiskImageFactory.Open(path, readOnly: true);
        Assert.True(image.ReadOnly);
        Assert.Throws<DiskImageReadOnlyException>(() => image.Write(0, new byte[512]));
        Assert.Throws<ArgumentOutOfRangeException>(() => image.Read((1 << 20) - 256, new byte[512]));
    }

    [Fact]
    public void DiscardPunchesHoles()
    {
        using var dir = new TempDirectory();
        string path = dir.File("holes.raw");
        DiskImageFactory.CreateRaw(path, 8 << 20);
        using var image = DiskImageFactory.Open(path);
        var data = new byte[8 << 20];
        new Random(5).NextBytes(data);
        image.Write(0, data);
        image.Flush();
        image.Discard(0, 8 << 20);
        var back = new byte[4096];
        image.Read(4096, back);
        Assert.All(back, b => Assert.Equal(0, b));
    }
}
