using System.Diagnostics;
using KvmPS.Storage.Qcow2;
using Xunit.Abstractions;

namespace KvmPS.Storage.Tests;

/// <summary>Cross-checks with qemu-img / qemu-io: QEMU must accept what we write and we must read what QEMU writes.</summary>
public class QemuInteropTests
{
    private readonly ITestOutputHelper _output;

    public QemuInteropTests(ITestOutputHelper output) => _output = output;

    private static byte[] RandomBytesWithHoles(int length, int seed)
    {
        var random = new Random(seed);
        var b = new byte[length];
        random.NextBytes(b);
        for (int i = 0; i < 20; i++)
        {
            int start = random.Next(length - 200_000);
            b.AsSpan(start, random.Next(1, 200_000)).Clear();
        }
        return b;
    }

    private static void AssertQemuCompare(string left, string leftFormat, string right, string rightFormat)
    {
        var r = QemuTools.Img("compare", "-f", leftFormat, "-F", rightFormat, left, right);
        Assert.True(r.ExitCode == 0, $"qemu-img compare {left} {right}: {r}");
    }

    [QemuImgFact]
    public void SeededRandomWritesPassQemuImgCheck()
    {
        using var dir = new TempDirectory();
        string path = dir.File("random.qcow2"), modelPath = dir.File("model.raw");
        const int size = 24 << 20;
        DiskImageFactory.CreateQcow2(path, size);
        var model = new byte[size];
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            image.StrictMetadataOrdering = false;
            RandomWorkload.Run(image, model, seed: 42, operations: 4000, discardGranularityBytes: 65536,
                maxLengthBytes: 150_000, verifyEvery: 500);
        }
        var check = QemuTools.AssertCheckClean(path);
        _output.WriteLine(check.Stdout);
        Assert.Contains("No errors were found", check.Stdout);
        File.WriteAllBytes(modelPath, model);
        AssertQemuCompare(path, "qcow2", modelPath, "raw");
    }

    [QemuImgFact]
    public void SmallClusterImageWithRefcountTableGrowthPassesCheck()
    {
        using var dir = new TempDirectory();
        string path = dir.File("small.qcow2"), modelPath = dir.File("model.raw");
        const int size = 48 << 20; // 512-byte clusters: the one-cluster refcount table covers only 64 MiB... of metadata+data
        DiskImageFactory.CreateQcow2(path, size, new Qcow2CreateOptions { ClusterSizeBytes = 512 });
        var model = new byte[size];
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            image.StrictMetadataOrdering = false;
            RandomWorkload.Run(image, model, seed: 7, operations: 700, discardGranularityBytes: 512,
                maxLengthBytes: 200_000, verifyEvery: 0);
            // Fill most of the disk to force refcount table growth.
            var fill = new byte[1 << 20];
            new Random(8).NextBytes(fill);
            for (int mb = 0; mb < 40; mb++)
            {
                image.Write((ulong)mb << 20, fill);
                fill.CopyTo(model, mb << 20);
            }
            RandomWorkload.AssertSame(image, model);
        }
        QemuTools.AssertCheckClean(path);
        File.WriteAllBytes(modelPath, model);
        AssertQemuCompare(path, "qcow2", modelPath, "raw");
    }

    [QemuImgFact]
    public void SnapshotsWeMakeAreListedByQemuAndImagePassesCheck()
    {
        using var dir = new TempDirectory();
        string path = dir.File("snaps.qcow2"), modelPath = dir.File("model.raw");
        const int size = 8 << 20;
        DiskImageFactory.CreateQcow2(path, size);
        var model = new byte[size];
        var saved = new Dictionary<string, byte[]>();
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            RandomWorkload.Run(image, model, seed: 11, operations: 300, discardGranularityBytes: 65536,
                maxLengthBytes: 100_000, verifyEvery: 0, afterEach: op =>
                {
                    if (op % 60 == 59)
                    {
                        string name = $"snap{op}";
                        image.CreateSnapshot(name);
                        saved[name] = (byte[])model.Clone();
                    }
                });
            image.DeleteSnapshot("snap119");
            saved.Remove("snap119");
            image.RevertToSnapshot("snap179");
            saved["snap179"].CopyTo(model, 0);
            RandomWorkload.AssertSame(image, model);
            image.Write(12345, new byte[] { 1, 2, 3 });
            model[12345] = 1; model[12346] = 2; model[12347] = 3;
        }
        QemuTools.AssertCheckClean(path);
        var list = QemuTools.Img("snapshot", "-l", path);
        Assert.Equal(0, list.ExitCode);
        _output.WriteLine(list.Stdout);
        foreach (var name in saved.Keys)
        {
            Assert.Contains(name, list.Stdout);
        }
        Assert.DoesNotContain("snap119", list.Stdout);
        File.WriteAllBytes(modelPath, model);
        AssertQemuCompare(path, "qcow2", modelPath, "raw");

        // QEMU applies one of our snapshots; we must read what it made.
        Assert.Equal(0, QemuTools.Img("snapshot", "-a", "snap59", path).ExitCode);
        using (var image = DiskImageFactory.Open(path, readOnly: true))
        {
            RandomWorkload.AssertSame(image, saved["snap59"]);
        }
        Assert.Equal(0, QemuTools.Img("snapshot", "-d", "snap239", path).ExitCode);
        QemuTools.AssertCheckClean(path);
    }

    [QemuImgFact]
    public void WeReadCompressedAndVersion2ImagesQemuWrote()
    {
        using var dir = new TempDirectory();
        string rawPath = dir.File("source.raw"), compressed = dir.File("c.qcow2"), v2 = dir.File("v2.qcow2"), ours = dir.File("ours.raw");
        var data = RandomBytesWithHoles(6 << 20, 21);
        // Make part of it compressible so compressed clusters really are compressed.
        for (int i = 0; i < 1 << 20; i++)
        {
            data[i] = (byte)(i % 7);
        }
        File.WriteAllBytes(rawPath, data);
        Assert.Equal(0, QemuTools.Img("convert", "-c", "-f", "raw", "-O", "qcow2", rawPath, compressed).ExitCode);
        Assert.Equal(0, QemuTools.Img("convert", "-f", "raw", "-O", "qcow2", "-o", "compat=0.10,cluster_size=4096", rawPath, v2).ExitCode);
        using (var image = DiskImageFactory.OpenQcow2(compressed, readOnly: true))
        {
            RandomWorkload.AssertSame(image, data);
            RandomWorkload.ExportToRaw(image, ours);
        }
        AssertQemuCompare(ours, "raw", compressed, "qcow2");
        using (var image = DiskImageFactory.OpenQcow2(v2, readOnly: true))
        {
            Assert.Equal(2, image.Version);
            RandomWorkload.AssertSame(image, data);
        }
        var original = (byte[])data.Clone();
        // Writing over compressed clusters (copy-on-write out of the compressed data) stays consistent.
        using (var image = DiskImageFactory.OpenQcow2(compressed))
        {
            image.Write(1000, new byte[] { 0xee });
            data[1000] = 0xee;
            image.WriteZeroes(65536, 65536, mayUnmap: true);
            data.AsSpan(65536, 65536).Clear();
            image.Discard(4 * 65536, 65536);
            data.AsSpan(4 * 65536, 65536).Clear();
            RandomWorkload.AssertSame(image, data);
        }
        QemuTools.AssertCheckClean(compressed);
        // And writing to a v2 image.
        data = original;
        using (var image = DiskImageFactory.OpenQcow2(v2))
        {
            image.Write(5000, new byte[] { 0x11, 0x22 });
            data[5000] = 0x11; data[5001] = 0x22;
            image.WriteZeroes(8192, 8192, mayUnmap: true);
            data.AsSpan(8192, 8192).Clear();
            RandomWorkload.AssertSame(image, data);
        }
        QemuTools.AssertCheckClean(v2);
    }

    [QemuIoFact]
    public void WeReadBackingChainsZeroClustersAndSnapshotsQemuWrote()
    {
        using var dir = new TempDirectory();
        string basePath = dir.File("base.qcow2"), top = dir.File("top.qcow2"), expectedRaw = dir.File("expected.raw"), ours = dir.File("ours.raw");
        Assert.Equal(0, QemuTools.Img("create", "-f", "qcow2", basePath, "4M").ExitCode);
        Assert.Equal(0, QemuTools.Io("-f", "qcow2", "-c", "write -P 0x5a 0 3M", basePath).ExitCode);
        Assert.Equal(0, QemuTools.Img("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top).ExitCode);
        var io = QemuTools.Io("-f", "qcow2",
            "-c", "write -P 0xab 100k 50k",
            "-c", "write -z 1M 128k",       // zero clusters hiding backing data
            "-c", "write -P 0x01 3500k 10k", // beyond the base's written data
            top);
        Assert.Equal(0, io.ExitCode);
        Assert.Equal(0, QemuTools.Img("snapshot", "-c", "before", top).ExitCode);
        Assert.Equal(0, QemuTools.Io("-f", "qcow2", "-c", "write -P 0xcd 0 64k", top).ExitCode);

        Assert.Equal(0, QemuTools.Img("convert", "-f", "qcow2", "-O", "raw", top, expectedRaw).ExitCode);
        var expected = File.ReadAllBytes(expectedRaw);
        Assert.Equal(0, expected[(1 << 20) + 10]);
        using (var image = DiskImageFactory.OpenQcow2(top, readOnly: true))
        {
            RandomWorkload.AssertSame(image, expected);
            RandomWorkload.ExportToRaw(image, ours);
            Assert.Equal("before", Assert.Single(image.ListSnapshots()).Name);
        }
        AssertQemuCompare(ours, "raw", top, "qcow2");

        // Revert to QEMU's snapshot with our code; QEMU must agree on the result.
        using (var image = DiskImageFactory.OpenQcow2(top))
        {
            image.RevertToSnapshot("before");
            var buffer = new byte[65536];
            image.Read(0, buffer);
            Assert.All(buffer, b => Assert.Equal(0x5a, b));
            RandomWorkload.ExportToRaw(image, ours);
        }
        QemuTools.AssertCheckClean(top);
        AssertQemuCompare(ours, "raw", top, "qcow2");
    }

    [QemuImgFact]
    public void QemuDefaultRefcountWidthsWork()
    {
        using var dir = new TempDirectory();
        foreach (int bits in new[] { 1, 8, 16, 64 })
        {
            string path = dir.File($"rc{bits}.qcow2");
            Assert.Equal(0, QemuTools.Img("create", "-f", "qcow2", "-o", $"refcount_bits={bits},cluster_size=4096", path, "4M").ExitCode);
            var model = new byte[4 << 20];
            using (var image = DiskImageFactory.OpenQcow2(path))
            {
                image.StrictMetadataOrdering = false;
                RandomWorkload.Run(image, model, seed: bits, operations: 150, discardGranularityBytes: 4096,
                    maxLengthBytes: 50_000, verifyEvery: 0);
                if (bits > 1)
                {
                    image.CreateSnapshot("s");
                    image.Write(0, new byte[10_000]);
                    image.RevertToSnapshot("s");
                }
            }
            QemuTools.AssertCheckClean(path);
        }
    }

    [QemuImgFact]
    public void WriterKilledMidWriteLeavesNoCorruption()
    {
        string writerDll = Path.Combine(AppContext.BaseDirectory, "qcow2-writer.dll");
        Assert.True(File.Exists(writerDll), $"test helper {writerDll} was not built");
        using var dir = new TempDirectory();
        string path = dir.File("crash.qcow2");
        DiskImageFactory.CreateQcow2(path, 32 << 20, new Qcow2CreateOptions { ClusterSizeBytes = 4096 });
        var random = new Random(99);
        for (int round = 0; round < 4; round++)
        {
            string marker = dir.File($"ready{round}");
            var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false };
            psi.ArgumentList.Add(writerDll);
            psi.ArgumentList.Add(path);
            psi.ArgumentList.Add(round.ToString());
            psi.ArgumentList.Add((round % 2 == 0).ToString());
            psi.ArgumentList.Add(marker);
            using var writer = Process.Start(psi)!;
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!File.Exists(marker) && !writer.HasExited && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(20);
            }
            Assert.False(writer.HasExited, $"writer exited early with code {(writer.HasExited ? writer.ExitCode : 0)}");
            Assert.True(File.Exists(marker), "writer did not report progress within 60 s");
            Thread.Sleep(random.Next(50, 400));
            writer.Kill(); // SIGKILL: no cleanup, no flush
            Assert.True(writer.WaitForExit(30_000), "killed writer did not exit");
            var check = QemuTools.AssertCheckClean(path, allowLeaks: true);
            _output.WriteLine($"round {round}: exit {check.ExitCode} {check.Stdout.Split('\n').FirstOrDefault(l => l.Contains("leaked"))}");
            // The image must still open and be writable by us after the crash.
            using var image = DiskImageFactory.Open(path);
            image.Write(0, new byte[4096]);
        }
    }
}
