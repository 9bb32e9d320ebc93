using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Hashing;
using System.Text.Json;
using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.State;

/// <summary>
/// Snapshot and restore through the kvmps-vmm binary (docs/snapshots.md): the built-in guest's "work" workload
/// (a memory pattern checked all the time, a counter on the console) is snapshotted mid-run, the VMM is killed with
/// SIGKILL, and a new process restores it: the counter goes on from where it stopped and the pattern still verifies.
/// </summary>
[Collection("vmm-process")]
public partial class SnapshotProcessTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private const string Workload = "kvmps.run=work 4";

    /// <summary>Starts the workload, waits for one full verify pass, snapshots it with resume:false, and kills the VMM.</summary>
    private (string Snapshot, string Before, JsonElement Reply) SnapshotRunningWorkload(TempDir dir, int vcpus, string memory = "256M")
    {
        string serial = dir.File("before.log"), sock = dir.File("a.sock");
        using var vmm = new VmmProcess("--vcpus", vcpus.ToString(), "--memory", memory, "--cmdline", Workload, "--serial", "file:" + serial, "--control-socket", sock);
        Assert.True(WaitForFile(serial, t => t.Contains("work: verify ok pass 1") && CountLine().Matches(t).Count >= 20, Timeout), ReadText(serial) + vmm.Stderr);
        using var client = new ControlClient(sock);
        string snapshot = dir.File("snap");
        var reply = client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"resume\": false");
        Assert.Equal("Paused", reply.GetProperty("vm_state").GetString());
        Assert.Equal("Paused", client.Ok("status").GetProperty("state").GetString());
        string before = ReadText(serial);
        Thread.Sleep(300);
        Assert.Equal(before, ReadText(serial)); // paused means paused: not one more byte
        vmm.Signal(9);
        vmm.WaitForExit(Timeout);
        return (snapshot, before, reply.Clone());
    }

    /// <summary>Every "work: count N" line of the two consoles together must be 1, 2, 3, ... with no gap and no restart.</summary>
    private static int AssertCountsContinue(string before, string after)
    {
        var counts = CountLine().Matches(before + after).Select(m => long.Parse(m.Groups[1].Value)).ToList();
        Assert.NotEmpty(counts);
        for (int i = 0; i < counts.Count; i++) Assert.True(counts[i] == i + 1, $"count line {i} says {counts[i]}, expected {i + 1}:\n{after[..Math.Min(after.Length, 400)]}");
        return counts.Count;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public void RestoredWorkloadContinuesCountingAndItsMemoryVerifies(int vcpus)
    {
        using var dir = new TempDir();
        var (snapshot, before, reply) = SnapshotRunningWorkload(dir, vcpus);
        log.WriteLine($"snapshot.create: {reply}");
        Assert.Equal(snapshot, reply.GetProperty("path").GetString());
        Assert.Equal("full", reply.GetProperty("memory").GetString());
        Assert.True(reply.GetProperty("memory_bytes").GetInt64() >= 4L << 20, "the 4 MiB pattern is in the memory file");
        Assert.True(reply.GetProperty("memory_bytes").GetInt64() < 64L << 20, "zero pages are not written");
        Assert.Equal(new FileInfo(Path.Combine(snapshot, "state.bin")).Length, reply.GetProperty("state_bytes").GetInt64());
        Assert.Equal(256L << 20, new FileInfo(Path.Combine(snapshot, "memory.bin")).Length);
        Assert.Equal(0, reply.GetProperty("disk_snapshots").GetArrayLength());
        int beforeCounts = CountLine().Matches(before).Count;

        string serial = dir.File("after.log"), sock = dir.File("b.sock");
        using var restored = new VmmProcess("--restore", snapshot, "--serial", "file:" + serial, "--control-socket", sock);
        // Two verify passes after the restore: the second checked every page in the new process.
        Assert.True(WaitForFile(serial, t => Occurrences(t, "work: verify ok pass") >= 2 || t.Contains("FAILED"), Timeout), ReadText(serial) + restored.Stderr);
        string after = ReadText(serial);
        Assert.DoesNotContain("FAILED", after);
        Assert.DoesNotContain("KvmPS built-in guest v1", after); // continued, not rebooted
        int total = AssertCountsContinue(before, after);
        Assert.True(total > beforeCounts + 5, $"the counter went on after the restore ({beforeCounts} before, {total} in all)");
        using var client = new ControlClient(sock);
        var status = client.Ok("status");
        Assert.Equal("Running", status.GetProperty("state").GetString());
        Assert.Equal(vcpus, status.GetProperty("vcpus").GetArrayLength());
        Assert.Contains("restored", restored.Stderr);
        log.WriteLine(restored.Stderr);
    }

    [Fact]
    public void CopiedMemoryRestoresLikeMappedMemory()
    {
        using var dir = new TempDir();
        var (snapshot, before, _) = SnapshotRunningWorkload(dir, 1);
        string serial = dir.File("after.log");
        using var restored = new VmmProcess("--restore", snapshot, "--restore-memory", "copy", "--serial", "file:" + serial);
        Assert.True(WaitForFile(serial, t => Occurrences(t, "work: verify ok pass") >= 2 || t.Contains("FAILED"), Timeout), ReadText(serial) + restored.Stderr);
        Assert.DoesNotContain("FAILED", ReadText(serial));
        AssertCountsContinue(before, ReadText(serial));
        Assert.Contains("memory copied", restored.Stderr);
    }

    [Fact]
    public void ADamagedMemoryPageIsCaughtByTheGuestsCheck()
    {
        // The negative control of the test above: if restore lost or moved memory, the guest would say so.
        using var dir = new TempDir();
        var (snapshot, _, _) = SnapshotRunningWorkload(dir, 1);
        using (var f = File.OpenHandle(Path.Combine(snapshot, "memory.bin"), FileMode.Open, FileAccess.Write))
            RandomAccess.Write(f, new byte[] { 0xde, 0xad }, (16L << 20) + 0x2008);
        string serial = dir.File("after.log");
        using var restored = new VmmProcess("--restore", snapshot, "--serial", "file:" + serial);
        Assert.True(WaitForFile(serial, t => t.Contains("FAILED") || Occurrences(t, "verify ok pass") >= 2, Timeout), ReadText(serial));
        Assert.Contains("work: verify FAILED at 0x1002000", ReadText(serial));
    }

    [Fact]
    public void PausedRestoreStaysPausedUntilResume()
    {
        using var dir = new TempDir();
        var (snapshot, before, _) = SnapshotRunningWorkload(dir, 2);
        string serial = dir.File("after.log"), sock = dir.File("b.sock");
        using var restored = new VmmProcess("--restore", snapshot, "--paused", "--serial", "file:" + serial, "--control-socket", sock);
        using var client = new ControlClient(sock);
        Assert.Equal("Paused", client.WaitForState("Paused", Timeout).GetProperty("state").GetString());
        Thread.Sleep(1000);
        Assert.Equal("", ReadText(serial));
        Assert.All(client.Ok("status").GetProperty("vcpus").EnumerateArray(), v => Assert.Equal("Paused", v.GetProperty("state").GetString()));
        Assert.Equal("Running", client.Ok("resume").GetProperty("state").GetString());
        Assert.True(WaitForFile(serial, t => CountLine().Matches(t).Count >= 5, Timeout), ReadText(serial) + restored.Stderr);
        AssertCountsContinue(before, ReadText(serial));
    }

    [Fact]
    public void SnapshotWithResumeKeepsTheVmRunningAndASecondSnapshotOfTheRestoredVmWorks()
    {
        using var dir = new TempDir();
        string serial = dir.File("a.log"), sock = dir.File("a.sock");
        using var vmm = new VmmProcess("--cmdline", Workload, "--serial", "file:" + serial, "--control-socket", sock);
        Assert.True(WaitForFile(serial, t => t.Contains("work: count 5"), Timeout), ReadText(serial));
        using var client = new ControlClient(sock);
        Directory.CreateDirectory(dir.File("empty")); // an existing empty directory is a valid target
        var reply = client.Ok("snapshot.create", $"\"path\": \"{dir.File("empty")}\"");
        Assert.Equal("Running", reply.GetProperty("vm_state").GetString());
        Assert.True(reply.GetProperty("paused_ms").GetInt64() <= reply.GetProperty("duration_ms").GetInt64());
        int seen = CountLine().Matches(ReadText(serial)).Count;
        Assert.True(WaitForFile(serial, t => CountLine().Matches(t).Count >= seen + 5, Timeout), "the VM runs on after the snapshot");

        // Restore it, and snapshot the restored VM: its config.json is carried over.
        vmm.Signal(9);
        vmm.WaitForExit(Timeout);
        string sock2 = dir.File("b.sock");
        using var restored = new VmmProcess("--restore", dir.File("empty"), "--serial", "none", "--control-socket", sock2);
        using var client2 = new ControlClient(sock2);
        client2.WaitForState("Running", Timeout);
        client2.Ok("snapshot.create", $"\"path\": \"{dir.File("again")}\"");
        Assert.Equal(File.ReadAllText(dir.File("empty/config.json")), File.ReadAllText(dir.File("again/config.json")));
    }

    [Fact]
    public void SnapshotIntoANonEmptyDirectoryIsRefusedAndTheVmRunsOn()
    {
        using var dir = new TempDir();
        string sock = dir.File("a.sock");
        using var vmm = new VmmProcess("--serial", "none", "--control-socket", sock);
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        string target = dir.File("full");
        Directory.CreateDirectory(target);
        File.WriteAllText(Path.Combine(target, "keep.txt"), "mine");
        var reply = client.Request("snapshot.create", $"\"path\": \"{target}\"");
        Assert.False(reply.GetProperty("ok").GetBoolean());
        Assert.Equal("InvalidArgument", reply.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains(target, reply.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal(["keep.txt"], Directory.GetFileSystemEntries(target).Select(Path.GetFileName));
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());

        // A failed snapshot is no parent: a diff still needs a full snapshot first.
        var diff = client.Request("snapshot.create", $"\"path\": \"{dir.File("d")}\", \"memory\": \"diff\"");
        Assert.Equal("InvalidState", diff.GetProperty("error").GetProperty("code").GetString());
        Assert.False(Directory.Exists(dir.File("d")));
        Assert.Empty(Directory.GetDirectories(dir.Path, ".*")); // no temporary directory left behind
    }

    [Fact]
    public void ARawDiskIsRefusedUnlessDisksAreIgnored()
    {
        using var dir = new TempDir();
        string disk = dir.File("disk.raw"), sock = dir.File("a.sock");
        using (var f = File.Create(disk)) f.SetLength(1 << 20);
        using var vmm = new VmmProcess("--serial", "none", "--control-socket", sock, "--device", $"block,path={disk},format=raw");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        var refused = client.Request("snapshot.create", $"\"path\": \"{dir.File("s1")}\"");
        Assert.Equal("InvalidState", refused.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains(disk, refused.GetProperty("error").GetProperty("message").GetString());
        Assert.False(Directory.Exists(dir.File("s1")));
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        var ok = client.Ok("snapshot.create", $"\"path\": \"{dir.File("s2")}\", \"disks\": \"ignore\"");
        Assert.Equal(0, ok.GetProperty("disk_snapshots").GetArrayLength());
        using var config = JsonDocument.Parse(File.ReadAllText(dir.File("s2/config.json")));
        var device = config.RootElement.GetProperty("devices")[0];
        Assert.Equal("block", device.GetProperty("type").GetString());
        Assert.Equal(disk, device.GetProperty("path").GetString());
    }

    public static TheoryData<string, string, string> Damage() => new()
    {
        { "corrupt", "state.bin", "CRC-64 mismatch" },
        { "truncated", "state.bin", "CRC-64 mismatch" },
        { "newer", "state.bin", "newer than this build" },
        { "no-memory", "memory.bin", "memory file is missing" },
        { "no-config", "config.json", "configuration file is missing" },
        { "bad-disks", "disks.json", "disk snapshot list cannot be read" },
    };

    [Theory]
    [MemberData(nameof(Damage))]
    public void ADamagedSnapshotIsRefusedNamingTheFileAndNothingStarts(string damage, string file, string problem)
    {
        using var dir = new TempDir();
        string snapshot = dir.File("snap"), sock = dir.File("a.sock");
        using (var vmm = new VmmProcess("--serial", "none", "--control-socket", sock))
        using (var client = new ControlClient(sock))
        {
            client.WaitForState("Running", Timeout);
            client.Ok("snapshot.create", $"\"path\": \"{snapshot}\"");
        }
        string target = Path.Combine(snapshot, file);
        byte[] state = File.ReadAllBytes(Path.Combine(snapshot, "state.bin"));
        switch (damage)
        {
            case "corrupt": state[state.Length / 2] ^= 1; File.WriteAllBytes(target, state); break;
            case "truncated": File.WriteAllBytes(target, state[..(state.Length - 100)]); break;
            case "newer":
                BinaryPrimitives.WriteUInt32LittleEndian(state.AsSpan(8), 99);
                BinaryPrimitives.WriteUInt64LittleEndian(state.AsSpan(state.Length - 8), Crc64.HashToUInt64(state.AsSpan(0, state.Length - 8)));
                File.WriteAllBytes(target, state);
                break;
            case "bad-disks": File.WriteAllText(target, "{\"disks\": [{\"path\": 7}]}"); break;
            default: File.Delete(target); break;
        }
        string serial = dir.File("after.log");
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--restore", snapshot, "--serial", "file:" + serial, "--control-socket", dir.File("b.sock"));
        Assert.Equal(2, code);
        Assert.Contains(target, stderr);
        Assert.Contains(problem, stderr);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.False(File.Exists(dir.File("b.sock")), "nothing was started");
        Assert.Equal("", ReadText(serial));
    }

    [Fact]
    public void RestoreTakesNoMachineFlags()
    {
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--restore", "/nonexistent", "--vcpus", "2");
        Assert.Equal(2, code);
        Assert.Contains("--vcpus cannot be combined with --restore", stderr);
    }

    /// <summary>KVMPS_STARTUP_TRACE=1 breaks a restore's start-up into its stages, in order; without it, no such line.</summary>
    [Fact]
    public void StartupTraceNamesEveryRestoreStageInOrder()
    {
        using var dir = new TempDir();
        string sock = dir.File("a.sock");
        using (var vmm = new VmmProcess("--serial", "none", "--control-socket", sock))
        using (var client = new ControlClient(sock))
        {
            // The socket answers before the vCPUs run (a jailed VMM enters its jail in between): wait as management does.
            Assert.Equal("Running", client.WaitForState("Running", Timeout).GetProperty("state").GetString());
            client.Ok("snapshot.create", $"\"path\": \"{dir.File("s")}\"");
        }
        // The main thread's stages, in order; "socket" comes from the thread that binds it meanwhile, after "args".
        // "sandbox" (filters installed, docs/confinement.md) is on the main thread right after "args" (and a jailed VMM's
        // "mount-ns"), while the early thread may be making the KVM VM: it falls anywhere after "args" and before "machine".
        string[] stages = ["main", "snapshot", "disks", "incoming", "config", "args", "kvm-vm", "slots", "hardware", "memory", "machine", "started"];
        foreach (bool traced in new[] { true, false })
        {
            string restoredSock = dir.File(traced ? "t.sock" : "u.sock");
            var environment = new Dictionary<string, string> { ["KVMPS_STARTUP_TRACE"] = traced ? "1" : "" };
            using var restored = new VmmProcess(["--restore", dir.File("s"), "--serial", "none", "--control-socket", restoredSock], false, environment);
            using (var client = new ControlClient(restoredSock)) client.Ok("stop");
            Assert.Equal(0, restored.WaitForExit(Timeout));
            var line = Regex.Match(restored.Stderr, @"kvmps-vmm: start-up (.*) ms");
            Assert.Equal(traced, line.Success);
            if (!traced) continue;
            var marks = Regex.Matches(line.Groups[1].Value, @"(\S+) ([\d.]+)").Select(m => (m.Groups[1].Value, double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture))).ToList();
            var socket = Assert.Single(marks, m => m.Item1 == "socket");
            Assert.True(socket.Item2 >= marks.Single(m => m.Item1 == "args").Item2, line.Value);
            marks.Remove(socket);
            var sandbox = Assert.Single(marks, m => m.Item1 == "sandbox");
            Assert.True(sandbox.Item2 >= marks.Single(m => m.Item1 == "args").Item2 && sandbox.Item2 <= marks.Single(m => m.Item1 == "machine").Item2, line.Value);
            marks.Remove(sandbox);
            // A jailed VMM takes its mount namespace between "args" and "sandbox" (VmmJail.EnterMountNamespace).
            if (marks.FindIndex(m => m.Item1 == "mount-ns") is int ns and >= 0)
            {
                Assert.True(marks[ns].Item2 >= marks.Single(m => m.Item1 == "args").Item2 && marks[ns].Item2 <= sandbox.Item2, line.Value);
                marks.RemoveAt(ns);
            }
            Assert.Equal(stages, marks.Select(m => m.Item1));
            for (int i = 1; i < marks.Count; i++) Assert.True(marks[i].Item2 >= marks[i - 1].Item2, line.Value);
        }
    }

    /// <summary>The figures the issue asks for: snapshot create and restore-to-running for a 256 MiB built-in guest.</summary>
    [Fact]
    public void MeasuresSnapshotAndRestoreOf256MiBGuest()
    {
        using var dir = new TempDir();
        string sock = dir.File("a.sock"), serial = dir.File("a.log");
        var durations = new List<long>();
        using (var vmm = new VmmProcess("--memory", "256M", "--cmdline", Workload, "--serial", "file:" + serial, "--control-socket", sock))
        using (var client = new ControlClient(sock))
        {
            Assert.True(WaitForFile(serial, t => t.Contains("work: count 3"), Timeout));
            for (int i = 0; i < 3; i++)
                durations.Add(client.Ok("snapshot.create", $"\"path\": \"{dir.File($"s{i}")}\"").GetProperty("duration_ms").GetInt64());
        }
        var restoreMs = new List<double>();
        foreach (string mode in new[] { "private", "copy" })
        {
            string after = dir.File($"{mode}.log");
            var clock = Stopwatch.StartNew();
            using var restored = new VmmProcess("--restore", dir.File("s0"), "--restore-memory", mode, "--serial", "file:" + after);
            Assert.True(WaitForFile(after, t => t.Contains("work: count"), Timeout), restored.Stderr);
            Assert.True(restored.WaitForStderr(@"running [\d.]+ ms after exec", Timeout), restored.Stderr);
            var m = Regex.Match(restored.Stderr, @"running ([\d.]+) ms after exec");
            Assert.True(m.Success, restored.Stderr);
            restoreMs.Add(double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
            log.WriteLine($"restore ({mode}): running {m.Groups[1].Value} ms after exec; first console line after {clock.ElapsedMilliseconds} ms");
        }
        log.WriteLine($"snapshot.create of 256 MiB: {string.Join(", ", durations)} ms");
        Assert.All(durations, d => Assert.True(d < 20_000));
    }
}
