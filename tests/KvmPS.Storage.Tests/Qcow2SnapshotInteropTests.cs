using System.Diagnostics;
using System.Text.Json;
using KvmPS.Storage.Qcow2;
using Xunit.Abstractions;

namespace KvmPS.Storage.Tests;

/// <summary>
/// Internal snapshots cross-checked with qemu-img: QEMU lists and applies ours, we list and apply
/// QEMU's, and 'qemu-img check' finds neither corruption nor leaks after any operation.
/// </summary>
public class Qcow2SnapshotInteropTests
{
    private const int ClusterBytes = 4096;
    private readonly ITestOutputHelper _output;

    public Qcow2SnapshotInteropTests(ITestOutputHelper output) => _output = output;

    private static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    private sealed record QemuSnapshot(string Id, string Name, long DateSec, long DateNsec, long VmClockNs, long VmStateSize);

    private static List<QemuSnapshot> QemuList(string path)
    {
        var r = QemuTools.Img("info", "--output=json", "-f", "qcow2", path);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var json = JsonDocument.Parse(r.Stdout);
        if (!json.RootElement.TryGetProperty("snapshots", out var snapshots))
        {
            return new List<QemuSnapshot>();
        }
        return snapshots.EnumerateArray().Select(s => new QemuSnapshot(
            s.GetProperty("id").GetString()!,
            s.GetProperty("name").GetString()!,
            s.GetProperty("date-sec").GetInt64(),
            s.GetProperty("date-nsec").GetInt64(),
            s.GetProperty("vm-clock-sec").GetInt64() * 1_000_000_000 + s.GetProperty("vm-clock-nsec").GetInt64(),
            s.GetProperty("vm-state-size").GetInt64())).ToList();
    }

    /// <summary>What QEMU reads from a snapshot (qemu-img convert -l), as a raw byte array.</summary>
    private static byte[] QemuSnapshotContents(string path, string id, TempDirectory dir)
    {
        string output = dir.File($"snapshot-{Guid.NewGuid():N}.raw");
        var r = QemuTools.Img("convert", "-f", "qcow2", "-O", "raw", "-l", $"snapshot.id={id}", path, output);
        Assert.True(r.ExitCode == 0, r.ToString());
        byte[] contents = File.ReadAllBytes(output);
        File.Delete(output);
        return contents;
    }

    private void CheckClean(string path, string after)
    {
        var r = QemuTools.Img("check", "-f", "qcow2", path);
        Assert.True(r.ExitCode == 0 && r.Stdout.Contains("No errors were found"), $"qemu-img check after {after}: {r}");
    }

    [QemuImgFact]
    public void QemuListsOurSnapshotsWithIdNameDateAndVmClock()
    {
        using var dir = new TempDirectory();
        string path = dir.File("ours.qcow2");
        DiskImageFactory.CreateQcow2(path, 4 << 20, new Qcow2CreateOptions { ClusterSizeBytes = ClusterBytes });
        DiskSnapshotInfo first, second;
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            image.Write(0, Pattern(1 << 20, 1));
            first = image.CreateSnapshot("20261204-checkpoint", "nightly", vmClockNs: 3_723_456_789_012, vmStateSizeBytes: 0);
            image.Write(4096, Pattern(8192, 2));
            second = image.CreateSnapshot("after boot"); // QEMU-style numeric ID
        }
        CheckClean(path, "creating two snapshots");

        var listed = QemuList(path);
        Assert.Equal(2, listed.Count);
        Assert.Equal(("20261204-checkpoint", "nightly"), (listed[0].Id, listed[0].Name));
        Assert.Equal(3_723_456_789_012, listed[0].VmClockNs);
        Assert.Equal(new DateTimeOffset(first.CreatedUtc).ToUnixTimeSeconds(), listed[0].DateSec);
        Assert.Equal(first.CreatedUtc.Ticks % TimeSpan.TicksPerSecond * 100, listed[0].DateNsec);
        Assert.Equal(0, listed[0].VmStateSize);
        Assert.Equal((second.Id, "after boot"), (listed[1].Id, listed[1].Name));
        Assert.Equal("1", second.Id);

        var text = QemuTools.Img("snapshot", "-l", path);
        _output.WriteLine(text.Stdout);
        Assert.Contains(text.Stdout.Split('\n'), l => l.StartsWith("20261204-checkpoint ") && l.Contains(" nightly ") && l.Contains("01:02:03.456"));
        Assert.Contains(text.Stdout.Split('\n'), l => l.StartsWith("1 ") && l.Contains(" after boot "));
    }

    [QemuIoFact]
    public void WeListAndRevertSnapshotsQemuMade()
    {
        using var dir = new TempDirectory();
        string path = dir.File("qemu.qcow2");
        Assert.Equal(0, QemuTools.Img("create", "-f", "qcow2", "-o", "cluster_size=4096", path, "2M").ExitCode);
        Assert.Equal(0, QemuTools.Io("-f", "qcow2", "-c", "write -P 0xa1 0 1M", path).ExitCode);
        Assert.Equal(0, QemuTools.Img("snapshot", "-c", "before", path).ExitCode);
        Assert.Equal(0, QemuTools.Io("-f", "qcow2", "-c", "write -P 0xb2 64k 200k", "-c", "write -z 512k 64k", path).ExitCode);
        Assert.Equal(0, QemuTools.Img("snapshot", "-c", "middle", path).ExitCode);
        Assert.Equal(0, QemuTools.Io("-f", "qcow2", "-c", "write -P 0xc3 0 2M", path).ExitCode);
        var qemuView = QemuList(path);

        var expectBefore = new byte[2 << 20];
        expectBefore.AsSpan(0, 1 << 20).Fill(0xa1);
        var expectMiddle = (byte[])expectBefore.Clone();
        expectMiddle.AsSpan(64 << 10, 200 << 10).Fill(0xb2);
        expectMiddle.AsSpan(512 << 10, 64 << 10).Clear();
        Assert.Equal(expectBefore, QemuSnapshotContents(path, "1", dir));

        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            var ours = image.ListSnapshots();
            Assert.Equal(new[] { ("1", "before"), ("2", "middle") }, ours.Select(s => (s.Id, s.Name)));
            Assert.Equal(qemuView.Select(q => q.DateSec), ours.Select(s => new DateTimeOffset(s.CreatedUtc).ToUnixTimeSeconds()));
            Assert.All(ours, s => Assert.Equal(2UL << 20, s.DiskSizeBytes));

            image.RevertToSnapshot("before");
            RandomWorkload.AssertSame(image, expectBefore);
        }
        CheckClean(path, "reverting to QEMU's snapshot 'before'");
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            image.RevertToSnapshot("2");
            RandomWorkload.AssertSame(image, expectMiddle);
            image.DeleteSnapshot("1");
        }
        CheckClean(path, "deleting QEMU's snapshot 1");
        Assert.Equal(new[] { "middle" }, QemuList(path).Select(s => s.Name));
        Assert.Equal(expectMiddle, QemuSnapshotContents(path, "2", dir));
        // QEMU can still use the image and the remaining snapshot after our changes.
        Assert.Equal(0, QemuTools.Img("snapshot", "-a", "middle", path).ExitCode);
        Assert.Equal(0, QemuTools.Img("snapshot", "-d", "middle", path).ExitCode);
        CheckClean(path, "QEMU applied and deleted the remaining snapshot");
    }

    [QemuImgFact]
    public void CheckIsCleanAfterEveryOperationAndQemuSeesEachSnapshotsOwnData()
    {
        using var dir = new TempDirectory();
        string path = dir.File("ops.qcow2"), modelPath = dir.File("model.raw");
        const int size = 4 << 20;
        DiskImageFactory.CreateQcow2(path, size, new Qcow2CreateOptions { ClusterSizeBytes = ClusterBytes });
        var model = new byte[size];
        var saved = new Dictionary<string, byte[]>();
        int seed = 100;

        void Step(string what, Action<Qcow2Image> action)
        {
            using (var image = DiskImageFactory.OpenQcow2(path))
            {
                action(image);
                RandomWorkload.AssertSame(image, model);
            }
            CheckClean(path, what);
        }
        void GuestWrites(Qcow2Image image) =>
            RandomWorkload.Run(image, model, seed: seed++, operations: 60, discardGranularityBytes: ClusterBytes,
                maxLengthBytes: 40_000, verifyEvery: 0);
        void Snapshot(Qcow2Image image, string id)
        {
            image.CreateSnapshot(id, "name-" + id, vmClockNs: (ulong)seed);
            saved[id] = (byte[])model.Clone();
        }
        void Revert(Qcow2Image image, string idOrName)
        {
            image.RevertToSnapshot(idOrName);
            saved[image.FindSnapshot(idOrName)!.Id].CopyTo(model, 0);
        }

        Step("guest writes", GuestWrites);
        Step("snapshot s1", image => Snapshot(image, "s1"));
        Step("guest writes to clusters shared with s1", GuestWrites);
        Step("zeroing and discarding shared clusters", image =>
        {
            image.WriteZeroes(0, 64 << 10, mayUnmap: false);
            image.WriteZeroes(128 << 10, 64 << 10, mayUnmap: true);
            image.Discard(256 << 10, 64 << 10);
            model.AsSpan(0, 64 << 10).Clear();
            model.AsSpan(128 << 10, 64 << 10).Clear();
            model.AsSpan(256 << 10, 64 << 10).Clear();
        });
        Step("snapshot s2", image => Snapshot(image, "s2"));
        Step("more guest writes", GuestWrites);
        Step("snapshot s3", image => Snapshot(image, "s3"));
        Step("revert to s1", image => Revert(image, "s1"));
        Step("guest writes after revert", GuestWrites);
        Step("delete s2", image => image.DeleteSnapshot("s2"));
        saved.Remove("s2");
        Step("revert to s3", image => Revert(image, "name-s3"));
        Step("delete s3 (the snapshot just reverted to)", image => image.DeleteSnapshot("s3"));
        saved.Remove("s3");
        Step("guest writes with only s1 left", GuestWrites);

        // Every remaining snapshot still holds exactly what the disk held when it was taken.
        foreach (var (id, contents) in saved)
        {
            Assert.Equal(contents, QemuSnapshotContents(path, id, dir));
        }
        File.WriteAllBytes(modelPath, model);
        var compare = QemuTools.Img("compare", "-f", "qcow2", "-F", "raw", path, modelPath);
        Assert.True(compare.ExitCode == 0, compare.ToString());

        Step("delete s1", image => image.DeleteSnapshot("s1"));
        Assert.Empty(QemuList(path));
    }

    [QemuImgFact]
    public void SnapshotsOfCompressedClustersKeepRefcountsExact()
    {
        using var dir = new TempDirectory();
        string rawPath = dir.File("source.raw"), path = dir.File("compressed.qcow2");
        var data = new byte[2 << 20];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(i % 13); // compressible: several compressed clusters share host clusters
        }
        File.WriteAllBytes(rawPath, data);
        Assert.Equal(0, QemuTools.Img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", rawPath, path).ExitCode);
        var original = (byte[])data.Clone();
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            image.CreateSnapshot("c", "compressed");
            image.Write(5000, Pattern(10_000, 3));
            Pattern(10_000, 3).CopyTo(data, 5000);
            image.WriteZeroes(1 << 20, 8192, mayUnmap: true);
            data.AsSpan(1 << 20, 8192).Clear();
            RandomWorkload.AssertSame(image, data);
        }
        CheckClean(path, "writing over shared compressed clusters");
        Assert.Equal(original, QemuSnapshotContents(path, "c", dir));
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            image.RevertToSnapshot("c");
            RandomWorkload.AssertSame(image, original);
        }
        CheckClean(path, "reverting to a snapshot of compressed clusters");
        DiskSnapshots.Delete(path, "c");
        CheckClean(path, "deleting the snapshot of compressed clusters");
    }

    [QemuImgFact]
    public void WriterKilledDuringSnapshotOperationsNeverUndercountsAReference()
    {
        string writerDll = Path.Combine(AppContext.BaseDirectory, "qcow2-writer.dll");
        Assert.True(File.Exists(writerDll), $"test helper {writerDll} was not built");
        using var dir = new TempDirectory();
        string path = dir.File("crash-snapshots.qcow2");
        DiskImageFactory.CreateQcow2(path, 8 << 20, new Qcow2CreateOptions { ClusterSizeBytes = ClusterBytes });
        var random = new Random(77);
        for (int round = 0; round < 4; round++)
        {
            string marker = dir.File($"ready{round}");
            var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false };
            foreach (string arg in new[] { writerDll, path, (round + 10).ToString(), "true", marker, "snapshots" })
            {
                psi.ArgumentList.Add(arg);
            }
            using var writer = Process.Start(psi)!;
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!File.Exists(marker) && !writer.HasExited && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(20);
            }
            Assert.False(writer.HasExited, $"writer exited early with code {(writer.HasExited ? writer.ExitCode : 0)}");
            Thread.Sleep(random.Next(100, 600));
            writer.Kill(); // SIGKILL, possibly in the middle of a snapshot create, revert or delete
            Assert.True(writer.WaitForExit(30_000), "killed writer did not exit");

            // Allowed after a crash: leaked clusters, and COPIED flags on clusters no published snapshot
            // shares (both repairable). Never a reference the refcounts do not count, or a broken table.
            var check = QemuTools.Img("check", "-f", "qcow2", path);
            _output.WriteLine($"round {round}: exit {check.ExitCode}\n{check.Stdout}{check.Stderr}");
            var errors = (check.Stdout + check.Stderr).Split('\n').Where(l => l.Contains("ERROR")).ToList();
            Assert.All(errors, l => Assert.Contains("OFLAG_COPIED", l));
            Assert.Contains(check.ExitCode, new[] { 0, 2, 3 });
            var repair = QemuTools.Img("check", "-r", "all", "-f", "qcow2", path);
            Assert.True(repair.ExitCode == 0, repair.ToString());
            CheckClean(path, $"repairing after crash {round}");

            // Every snapshot that survived is still readable and revertable by us.
            using var image = DiskImageFactory.OpenQcow2(path);
            var buffer = new byte[image.SizeBytes];
            foreach (var snapshot in image.ListSnapshots())
            {
                image.RevertToSnapshot(snapshot.Id);
                image.Read(0, buffer);
            }
        }
        CheckClean(path, "the last revert");
    }
}
