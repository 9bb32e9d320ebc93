using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Support;
using KvmPS.State;
using Xunit;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.State;

/// <summary>
/// Diff snapshots through the kvmps-vmm binary (docs/snapshots.md, "Diff snapshots"): a full snapshot, then diffs
/// that hold only the pages dirtied since the previous snapshot (KVM's dirty log plus the pages devices wrote), and
/// restores of a chain in a new process.
/// </summary>
[Collection("vmm-process")]
public partial class DiffSnapshotProcessTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    private static int Counts(string text) => CountLine().Matches(text).Count;

    /// <summary>Every "work: count N" line of the two consoles together must be 1, 2, 3, ... with no gap and no restart.</summary>
    private static int AssertCountsContinue(string before, string after)
    {
        var counts = CountLine().Matches(before + after).Select(m => long.Parse(m.Groups[1].Value)).ToList();
        Assert.NotEmpty(counts);
        for (int i = 0; i < counts.Count; i++) Assert.True(counts[i] == i + 1, $"count line {i} says {counts[i]}, expected {i + 1}:\n{after[..Math.Min(after.Length, 400)]}");
        return counts.Count;
    }

    private static JsonElement Snapshot(ControlClient client, string path, string memory, bool resume = true, string extra = "")
        => client.Ok("snapshot.create", $"\"path\": \"{path}\", \"memory\": \"{memory}\", \"resume\": {(resume ? "true" : "false")}{extra}").Clone();

    /// <summary>Restores <paramref name="snapshot"/> in a new process and checks the counter continues from <paramref name="before"/> and the whole pattern verifies.</summary>
    private void AssertRestoreContinues(TempDir dir, string snapshot, string before, string name, string memoryMode = "private")
    {
        string serial = dir.File($"{name}.log"), sock = dir.File($"{name}.sock");
        using var restored = new VmmProcess("--restore", snapshot, "--restore-memory", memoryMode, "--serial", "file:" + serial, "--control-socket", sock);
        // Two verify passes after the restore: the second checked every page of the pattern in the new process.
        Assert.True(WaitForFile(serial, t => Occurrences(t, "work: verify ok pass") >= 2 || t.Contains("FAILED"), Timeout), ReadText(serial) + restored.Stderr);
        string after = ReadText(serial);
        Assert.DoesNotContain("FAILED", after);
        Assert.DoesNotContain("KvmPS built-in guest v1", after); // continued, not rebooted
        int total = AssertCountsContinue(before, after);
        log.WriteLine($"{name}: {Counts(before)} counts before, {total} in all; {restored.Stderr.Trim()}");
    }

    [Fact]
    public void ChainOfTwoDiffsRestoresEachLinkAndTheCounterGoesOnFromIt()
    {
        using var dir = new TempDir();
        string serial = dir.File("a.log"), sock = dir.File("a.sock");
        string full = dir.File("full"), diff1 = dir.File("d1"), diff2 = dir.File("d2");
        string before1, before2;
        JsonElement fullReply, diff1Reply, diff2Reply;
        using (var vmm = new VmmProcess("--memory", "256M", "--cmdline", "kvmps.run=work 16", "--serial", "file:" + serial, "--control-socket", sock))
        using (var client = new ControlClient(sock))
        {
            Assert.True(WaitForFile(serial, t => t.Contains("work: verify ok pass 1") && Counts(t) >= 5, Timeout), ReadText(serial) + vmm.Stderr);
            fullReply = Snapshot(client, full, "full");
            int seen = Counts(ReadText(serial));
            Assert.True(WaitForFile(serial, t => Counts(t) >= seen + 10, Timeout), ReadText(serial));
            diff1Reply = Snapshot(client, diff1, "diff", resume: false);
            before1 = ReadText(serial);
            client.Ok("resume");
            Assert.True(WaitForFile(serial, t => Counts(t) >= Counts(before1) + 10, Timeout), ReadText(serial));
            diff2Reply = Snapshot(client, diff2, "diff", resume: false);
            before2 = ReadText(serial);
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }
        log.WriteLine($"full: {fullReply}\ndiff 1: {diff1Reply}\ndiff 2: {diff2Reply}");
        Assert.Equal("full", fullReply.GetProperty("memory").GetString());
        Assert.Equal("diff", diff1Reply.GetProperty("memory").GetString());
        Assert.Equal("diff", diff2Reply.GetProperty("memory").GetString());
        long fullBytes = fullReply.GetProperty("memory_bytes").GetInt64();
        Assert.True(fullBytes >= 16L << 20, "the full snapshot holds the 16 MiB pattern");
        foreach (var d in new[] { diff1Reply, diff2Reply })
            Assert.True(d.GetProperty("memory_bytes").GetInt64() * 20 < fullBytes, $"a diff of a guest that only counts is much smaller than the full snapshot: {d}");
        Assert.Equal(full, File.ReadAllText(Path.Combine(diff1, "parent")).Trim());
        Assert.Equal(diff1, File.ReadAllText(Path.Combine(diff2, "parent")).Trim());
        Assert.False(File.Exists(Path.Combine(full, "parent")));
        Assert.Equal(256L << 20, new FileInfo(Path.Combine(diff2, "memory.bin")).Length);

        AssertRestoreContinues(dir, diff2, before2, "restore-d2");
        AssertRestoreContinues(dir, diff1, before1, "restore-d1");
    }

    [Fact]
    public void PagesWrittenAfterTheFullSnapshotComeFromTheDiffsAndARestoredVmTakesDiffsOnItsSnapshot()
    {
        // The full snapshot is of an idle guest; the 16 MiB pattern exists only in diff 1. Restoring diff 2 must take
        // it from diff 1 (a page diff 2 does not hold comes from the newest older link that does).
        using var dir = new TempDir();
        string serial = dir.File("a.log"), sock = dir.File("a.sock");
        string full = dir.File("full"), diff1 = dir.File("d1"), diff2 = dir.File("d2");
        string before2;
        long diff1Bytes, fullBytes;
        using (var vmm = new VmmProcess("--memory", "256M", "--serial", "file:" + serial, "--control-socket", sock))
        using (var client = new ControlClient(sock))
        {
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial) + vmm.Stderr);
            fullBytes = Snapshot(client, full, "full").GetProperty("memory_bytes").GetInt64();
            using (var console = new ControlClient(sock))
            {
                console.Ok("console.attach", "\"replay\": false");
                console.Stream.Write("work 16\r"u8);
                Assert.True(WaitForFile(serial, t => t.Contains("work: verify ok pass 1") && Counts(t) >= 3, Timeout), ReadText(serial));
            }
            diff1Bytes = Snapshot(client, diff1, "diff").GetProperty("memory_bytes").GetInt64();
            int seen = Counts(ReadText(serial));
            Assert.True(WaitForFile(serial, t => Counts(t) >= seen + 5, Timeout), ReadText(serial));
            Snapshot(client, diff2, "diff", resume: false);
            before2 = ReadText(serial);
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }
        log.WriteLine($"full {fullBytes} bytes, diff 1 {diff1Bytes} bytes");
        Assert.True(fullBytes < 8L << 20, "the idle guest's full snapshot has no pattern");
        Assert.True(diff1Bytes >= 16L << 20, "diff 1 holds the pattern written after the full snapshot");
        AssertRestoreContinues(dir, diff2, before2, "restore-d2");
        AssertRestoreContinues(dir, diff2, before2, "restore-d2-copy", "copy"); // the base copied, not mapped, then the diffs

        // A VM restored from diff 2 takes its next diff on diff 2, and that chain restores too.
        string serial3 = dir.File("c.log"), sock3 = dir.File("c.sock"), diff3 = dir.File("d3");
        string before3;
        using (var restored = new VmmProcess("--restore", diff2, "--serial", "file:" + serial3, "--control-socket", sock3))
        using (var client = new ControlClient(sock3))
        {
            Assert.True(WaitForFile(serial3, t => Counts(t) >= 5, Timeout), ReadText(serial3) + restored.Stderr);
            var reply = Snapshot(client, diff3, "diff", resume: false);
            Assert.True(reply.GetProperty("memory_bytes").GetInt64() < 1L << 20, reply.ToString());
            before3 = before2 + ReadText(serial3);
            restored.Signal(9);
            restored.WaitForExit(Timeout);
        }
        Assert.Equal(diff2, File.ReadAllText(Path.Combine(diff3, "parent")).Trim());
        AssertRestoreContinues(dir, diff3, before3, "restore-d3");
    }

    [Fact]
    public void ABlockReadIntoGuestMemoryIsInTheDiff()
    {
        // The guest reads 64 KiB from the disk into its buffer: only the device writes those pages, the vCPU merely
        // reads them for the checksum, so KVM's dirty log never sees them. Without the VMM's own record of device
        // writes the data would be missing from the diff.
        using var dir = new TempDir();
        string disk = dir.File("disk.raw"), serial = dir.File("a.log"), sock = dir.File("a.sock");
        byte[] data = new byte[1 << 20];
        new Random(11).NextBytes(data);
        File.WriteAllBytes(disk, data);
        string full = dir.File("full"), diff = dir.File("d1");
        using (var vmm = new VmmProcess("--serial", "file:" + serial, "--control-socket", sock, "--device", $"block,path={disk},format=raw"))
        using (var client = new ControlClient(sock))
        {
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial) + vmm.Stderr);
            Snapshot(client, full, "full", extra: ", \"disks\": \"ignore\"");
            using (var console = new ControlClient(sock))
            {
                console.Ok("console.attach", "\"replay\": false");
                console.Stream.Write("blk read 0 128\r"u8);
                Assert.True(WaitForFile(serial, t => t.Contains("blk: crc32"), Timeout), ReadText(serial));
            }
            Snapshot(client, diff, "diff", resume: false, extra: ", \"disks\": \"ignore\"");
        }
        var pages = SnapshotPagesFile.Decode(File.ReadAllBytes(Path.Combine(diff, "pages.bin")), "pages.bin").Pages;
        log.WriteLine($"diff holds {pages.Count} pages");
        // The 16 pages of the disk's first 64 KiB, one after another, each a page the diff holds.
        byte[] memory = File.ReadAllBytes(Path.Combine(diff, "memory.bin"));
        var first = data.AsSpan(0, 4096);
        long found = -1;
        for (long at = 0; at + (64 << 10) <= memory.Length; at += 4096)
            if (memory.AsSpan((int)at, 4096).SequenceEqual(first)) { found = at; break; }
        Assert.True(found >= 0, "the block data read after the full snapshot is in the diff's memory file");
        Assert.True(memory.AsSpan((int)found, 64 << 10).SequenceEqual(data.AsSpan(0, 64 << 10)));
        for (int p = 0; p < 16; p++) Assert.True(pages.Contains((ulong)found / 4096 + (ulong)p), $"page {found / 4096 + p} is listed in pages.bin");
        // ...and the full snapshot did not have it (the buffer was empty then).
        byte[] fullMemory = File.ReadAllBytes(Path.Combine(full, "memory.bin"));
        Assert.False(fullMemory.AsSpan((int)found, 4096).SequenceEqual(first));
    }

    [Fact]
    public void ADiffWithoutAFullSnapshotIsRefused()
    {
        using var dir = new TempDir();
        string sock = dir.File("a.sock");
        using var vmm = new VmmProcess("--serial", "none", "--control-socket", sock);
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        var reply = client.Request("snapshot.create", $"\"path\": \"{dir.File("d")}\", \"memory\": \"diff\"");
        Assert.False(reply.GetProperty("ok").GetBoolean());
        Assert.Equal("InvalidState", reply.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("full", reply.GetProperty("error").GetProperty("message").GetString());
        Assert.False(Directory.Exists(dir.File("d")));
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
    }

    public static TheoryData<string, string, string> BadChains() => new()
    {
        { "missing-parent", "d1/parent", "does not exist" },
        { "replaced-parent", "full/state.bin", "not the parent" },
        { "corrupt-parent", "full/state.bin", "CRC-64 mismatch" },
        { "cycle", "d1/parent", "loops" },
        { "relative-parent", "d2/parent", "absolute path" },
        { "corrupt-pages", "d2/pages.bin", "CRC-64 mismatch" },
        { "no-pages", "d2/pages.bin", "missing" },
        { "parent-memory-missing", "full/memory.bin", "memory file is missing" },
    };

    [Theory]
    [MemberData(nameof(BadChains))]
    public void ABrokenChainIsRefusedNamingTheFileAndNothingStarts(string damage, string file, string problem)
    {
        using var dir = new TempDir();
        string sock = dir.File("a.sock");
        string full = dir.File("full"), d1 = dir.File("d1"), d2 = dir.File("d2"), other = dir.File("other");
        using (var vmm = new VmmProcess("--serial", "none", "--control-socket", sock))
        using (var client = new ControlClient(sock))
        {
            client.WaitForState("Running", Timeout);
            Snapshot(client, full, "full");
            Snapshot(client, d1, "diff");
            Snapshot(client, d2, "diff");
            Snapshot(client, other, "full");
        }
        string target = dir.File(file);
        switch (damage)
        {
            case "missing-parent": Directory.Delete(full, recursive: true); break;
            case "replaced-parent": File.Copy(Path.Combine(other, "state.bin"), target, overwrite: true); break; // valid, but another snapshot's
            case "corrupt-parent": { var b = File.ReadAllBytes(target); b[b.Length / 2] ^= 1; File.WriteAllBytes(target, b); break; }
            case "cycle": File.WriteAllText(target, d2 + "\n"); break;
            case "relative-parent": File.WriteAllText(target, "d1\n"); break;
            case "corrupt-pages": { var b = File.ReadAllBytes(target); b[^9] ^= 1; File.WriteAllBytes(target, b); break; }
            default: File.Delete(target); break;
        }
        string serial = dir.File("after.log");
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--restore", d2, "--serial", "file:" + serial, "--control-socket", dir.File("b.sock"));
        log.WriteLine(stderr);
        Assert.Equal(2, code);
        Assert.Contains(target, stderr);
        Assert.Contains(problem, stderr);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.False(File.Exists(dir.File("b.sock")), "nothing was started");
        Assert.Equal("", ReadText(serial));
    }
}
