using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Devices;
using KvmPS.Engine.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.State;

/// <summary>
/// Snapshots with qcow2 disks through the kvmps-vmm binary (docs/snapshots.md, "Disks"): the built-in guest writes
/// one region after another; snapshot.create gives the disk an internal qcow2 snapshot at the paused instant, the
/// guest writes on, the VMM is killed, and a restore brings the disk back to the snapshot's content. qemu-img
/// checks the image and reads the snapshot independently.
/// </summary>
[Collection("vmm-process")]
public partial class DiskSnapshotProcessTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private const int RegionSectors = 64, Regions = 40;
    private const long DiskBytes = 4L << 20;

    [GeneratedRegex(@"^blk: wrote 64\r?$", RegexOptions.Multiline)]
    private static partial Regex WroteLine();

    /// <summary>Region i (64 sectors from sector 64·i) gets the guest's `blk write` pattern with seed i + 1.</summary>
    private static string WritingWorkload()
        => "kvmps.run=" + string.Join(",", Enumerable.Range(0, Regions).Select(i => $"blk write {i * RegionSectors} {RegionSectors} {i + 1}"));

    private static string ReadText(string path) => File.Exists(path) ? File.ReadAllText(path) : "";

    private static int Wrote(string serial) => WroteLine().Matches(ReadText(serial)).Count;

    private static bool WaitFor(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (condition()) return true;
            Thread.Sleep(20);
        }
        return condition();
    }

    private static string QemuImg(params string[] args)
    {
        var psi = new ProcessStartInfo(BlockTestData.QemuImg!) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000)) { p.Kill(); throw new TimeoutException($"qemu-img {string.Join(' ', args)} timed out"); }
        if (p.ExitCode != 0) throw new InvalidOperationException($"qemu-img {string.Join(' ', args)}: exit {p.ExitCode}\n{stdout.Result}{stderr.Result}");
        return stdout.Result;
    }

    private static string NewDisk(TempDir dir, string name)
    {
        string disk = dir.File(name);
        QemuImg("create", "-q", "-f", "qcow2", disk, DiskBytes.ToString());
        return disk;
    }

    /// <summary>The disk's content as qemu-img reads it: the current state, or internal snapshot <paramref name="snapshotId"/>.</summary>
    private static byte[] Content(TempDir dir, string disk, string? snapshotId = null)
    {
        string raw = dir.File($"content-{Guid.NewGuid():N}.raw");
        if (snapshotId is null) QemuImg("convert", "-f", "qcow2", "-O", "raw", disk, raw);
        else QemuImg("convert", "-f", "qcow2", "-O", "raw", "-l", $"snapshot.id={snapshotId}", disk, raw);
        byte[] bytes = File.ReadAllBytes(raw);
        File.Delete(raw);
        return bytes;
    }

    private static ReadOnlySpan<byte> Region(byte[] disk, int i) => disk.AsSpan(i * RegionSectors * 512, RegionSectors * 512);

    private static void AssertImageClean(string disk)
    {
        var (code, output) = BlockTestData.QemuImgCheck(disk);
        Assert.True(code == 0, $"qemu-img check {disk}: exit {code}\n{output}");
    }

    [BlockQemuImgFact]
    public void DiskUnderWritesIsRestoredToItsContentAtTheSnapshotInstant()
    {
        using var dir = new TempDir();
        string disk = NewDisk(dir, "disk.qcow2"), serial = dir.File("before.log"), sock = dir.File("a.sock"), snapshot = dir.File("snap");
        int wroteAtSnapshot;
        using (var vmm = new VmmProcess("--serial", "file:" + serial, "--control-socket", sock, "--cmdline", WritingWorkload(),
                   "--device", $"block,path={disk},format=qcow2"))
        using (var client = new ControlClient(sock))
        {
            Assert.True(WaitFor(() => Wrote(serial) >= 3, Timeout), ReadText(serial) + vmm.Stderr);
            var reply = client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"resume\": false, \"snapshot_id\": \"s1\"");
            log.WriteLine($"snapshot.create: {reply}");
            var disks = reply.GetProperty("disk_snapshots");
            Assert.Equal(1, disks.GetArrayLength());
            Assert.Equal(disk, disks[0].GetProperty("path").GetString());
            Assert.Equal("s1", disks[0].GetProperty("snapshot_id").GetString());
            wroteAtSnapshot = Wrote(serial);
            Assert.True(wroteAtSnapshot < Regions - 3, "the guest is still writing at the snapshot");
            client.Ok("resume");
            Assert.True(WaitFor(() => Wrote(serial) >= wroteAtSnapshot + 2, Timeout), ReadText(serial) + vmm.Stderr);
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }

        // The recorded list, and qemu-img's view of the image: one internal snapshot s1, metadata clean.
        using (var recorded = JsonDocument.Parse(File.ReadAllText(Path.Combine(snapshot, "disks.json"))))
        {
            var entry = Assert.Single(recorded.RootElement.GetProperty("disks").EnumerateArray());
            Assert.Equal(disk, entry.GetProperty("path").GetString());
            Assert.Equal("s1", entry.GetProperty("snapshot_id").GetString());
        }
        Assert.Contains("s1", QemuImg("snapshot", "-l", disk));
        AssertImageClean(disk);

        // The snapshot holds exactly the regions whose write had completed when the guest was paused (the one in
        // flight may be partly there), and none that the guest started afterwards.
        byte[] atSnapshot = Content(dir, disk, "s1");
        for (int i = 0; i < wroteAtSnapshot; i++)
            Assert.True(Region(atSnapshot, i).SequenceEqual(BlockTestData.Pattern(RegionSectors, (uint)(i + 1))), $"region {i} was written before the snapshot");
        for (int i = wroteAtSnapshot + 1; i < Regions; i++)
            Assert.True(Region(atSnapshot, i).IndexOfAnyExcept((byte)0) < 0, $"region {i} was written after the snapshot");
        byte[] beforeRestore = Content(dir, disk);
        Assert.False(beforeRestore.AsSpan().SequenceEqual(atSnapshot), "the guest wrote on after the snapshot");

        // Restore (paused: no vCPU runs, so the disk is what the restore made it), then kill again.
        string sock2 = dir.File("b.sock");
        using (var vmm = new VmmProcess("--restore", snapshot, "--paused", "--serial", "none", "--control-socket", sock2))
        using (var client = new ControlClient(sock2))
        {
            Assert.Equal("Paused", client.WaitForState("Paused", Timeout).GetProperty("state").GetString());
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }
        AssertImageClean(disk);
        Assert.Contains("s1", QemuImg("snapshot", "-l", disk));
        Assert.True(Content(dir, disk).AsSpan().SequenceEqual(atSnapshot), "after the restore the disk reads as it did at the snapshot instant");
    }

    [BlockQemuImgFact]
    public void RestoredGuestWritesOnFromTheSnapshotsDisk()
    {
        using var dir = new TempDir();
        string disk = NewDisk(dir, "disk.qcow2"), serial = dir.File("before.log"), sock = dir.File("a.sock"), snapshot = dir.File("snap");
        using (var vmm = new VmmProcess("--serial", "file:" + serial, "--control-socket", sock, "--cmdline", WritingWorkload(),
                   "--device", $"block,path={disk},format=qcow2"))
        using (var client = new ControlClient(sock))
        {
            Assert.True(WaitFor(() => Wrote(serial) >= 2, Timeout), ReadText(serial) + vmm.Stderr);
            client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"resume\": false");
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }
        Assert.Contains("snap", QemuImg("snapshot", "-l", disk)); // the default ID is the directory's name

        string after = dir.File("after.log");
        using (var vmm = new VmmProcess("--restore", snapshot, "--serial", "file:" + after, "--control-socket", dir.File("b.sock")))
        {
            var lastWrite = new Regex($@"> blk write {(Regions - 1) * RegionSectors} {RegionSectors} {Regions}\r?\nblk: wrote 64\r?\n");
            Assert.True(WaitFor(() => lastWrite.IsMatch(ReadText(after)), Timeout), ReadText(after) + vmm.Stderr);
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }
        AssertImageClean(disk);
        byte[] content = Content(dir, disk);
        for (int i = 0; i < Regions; i++)
            Assert.True(Region(content, i).SequenceEqual(BlockTestData.Pattern(RegionSectors, (uint)(i + 1))), $"region {i} holds its pattern");
    }

    [BlockQemuImgFact]
    public void ADuplicateSnapshotIdIsRefusedNamingTheDiskAndNoDiskGetsOne()
    {
        using var dir = new TempDir();
        string first = NewDisk(dir, "a.qcow2"), second = NewDisk(dir, "b.qcow2"), sock = dir.File("a.sock");
        QemuImg("snapshot", "-c", "s1", second);
        using var vmm = new VmmProcess("--serial", "none", "--control-socket", sock,
            "--device", $"block,path={first},format=qcow2", "--device", $"block,path={second},format=qcow2");
        using (var client = new ControlClient(sock))
        {
            client.WaitForState("Running", Timeout);
            var refused = client.Request("snapshot.create", $"\"path\": \"{dir.File("snap")}\", \"snapshot_id\": \"s1\"");
            log.WriteLine(refused.ToString());
            Assert.Equal("InvalidArgument", refused.GetProperty("error").GetProperty("code").GetString());
            string message = refused.GetProperty("error").GetProperty("message").GetString()!;
            Assert.Contains(second, message);
            Assert.Contains("'s1'", message);
            Assert.False(Directory.Exists(dir.File("snap")));
            Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
            // Another ID works on both disks.
            var ok = client.Ok("snapshot.create", $"\"path\": \"{dir.File("snap2")}\", \"snapshot_id\": \"s2\"");
            Assert.Equal(2, ok.GetProperty("disk_snapshots").GetArrayLength());
        }
        vmm.Signal(9);
        vmm.WaitForExit(Timeout);
        Assert.DoesNotContain("s1", QemuImg("snapshot", "-l", first));
        Assert.Contains("s2", QemuImg("snapshot", "-l", first));
        Assert.Single(Regex.Matches(QemuImg("snapshot", "-l", second), @"\bs1\b"));
        AssertImageClean(first);
        AssertImageClean(second);
    }

    /// <summary>
    /// The second disk cannot take a snapshot (refcount_bits=1: every shared cluster would need refcount 2): the
    /// request fails naming it, the first disk's snapshot is deleted again, nothing is written, and the VM runs on.
    /// </summary>
    [BlockQemuImgFact]
    public void AFailedDiskSnapshotDeletesTheOnesMadeAndTheVmRunsOn()
    {
        using var dir = new TempDir();
        string first = NewDisk(dir, "a.qcow2"), data = dir.File("data.raw"), second = dir.File("b.qcow2"), sock = dir.File("a.sock");
        File.WriteAllBytes(data, BlockTestData.Pattern(2048, 7));
        QemuImg("convert", "-f", "raw", "-O", "qcow2", "-o", "refcount_bits=1", data, second);
        using var vmm = new VmmProcess("--serial", "none", "--control-socket", sock,
            "--device", $"block,path={first},format=qcow2", "--device", $"block,path={second},format=qcow2");
        using (var client = new ControlClient(sock))
        {
            client.WaitForState("Running", Timeout);
            var failed = client.Request("snapshot.create", $"\"path\": \"{dir.File("snap")}\", \"snapshot_id\": \"s1\"");
            log.WriteLine(failed.ToString());
            Assert.False(failed.GetProperty("ok").GetBoolean());
            string message = failed.GetProperty("error").GetProperty("message").GetString()!;
            Assert.Contains(second, message);
            Assert.Contains("'s1'", message);
            Assert.False(Directory.Exists(dir.File("snap")));
            Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        }
        vmm.Signal(9);
        vmm.WaitForExit(Timeout);
        Assert.DoesNotContain("s1", QemuImg("snapshot", "-l", first));
        Assert.DoesNotContain("s1", QemuImg("snapshot", "-l", second));
        AssertImageClean(first);
        AssertImageClean(second); // the failed create changed nothing
    }

    [BlockQemuImgTheory]
    [InlineData("deleted", "lost its internal snapshot")]
    [InlineData("replaced", "is not the one this snapshot took")]
    public void RestoreRefusesADiskWhoseSnapshotIsGoneOrChangedAndStartsNothing(string damage, string problem)
    {
        using var dir = new TempDir();
        string disk = NewDisk(dir, "disk.qcow2"), sock = dir.File("a.sock"), snapshot = dir.File("snap");
        using (var vmm = new VmmProcess("--serial", "none", "--control-socket", sock, "--device", $"block,path={disk},format=qcow2"))
        using (var client = new ControlClient(sock))
        {
            client.WaitForState("Running", Timeout);
            client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"snapshot_id\": \"s1\"");
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }
        QemuImg("snapshot", "-d", "s1", disk);
        if (damage == "replaced")
        {
            Thread.Sleep(1100); // another second: qemu-img's creation time differs
            QemuImg("snapshot", "-c", "s1", disk);
        }
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--restore", snapshot, "--serial", "none", "--control-socket", dir.File("b.sock"));
        log.WriteLine(stderr);
        Assert.Equal(2, code);
        Assert.Contains(disk, stderr);
        Assert.Contains("'s1'", stderr);
        Assert.Contains(problem, stderr);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.False(File.Exists(dir.File("b.sock")), "nothing was started");
        AssertImageClean(disk);
    }
}

/// <summary>A theory skipped when qemu-img is not installed.</summary>
public sealed class BlockQemuImgTheoryAttribute : TheoryAttribute
{
    public BlockQemuImgTheoryAttribute()
    {
        if (BlockTestData.QemuImg is null) Skip = "qemu-img not found on PATH (install the qemu-utils package to run qemu interop tests).";
    }
}
