using System.Buffers.Binary;
using System.IO.Hashing;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Migration;

/// <summary>
/// Live migration between two kvmps-vmm processes on this host (docs/migration.md): the built-in guest's "work"
/// workload (a memory pattern it re-checks all the time, a counter on the console) moves from a source VMM to an
/// <c>--incoming</c> one and goes on counting there; every fault leaves it running on the source.
/// </summary>
[Collection("vmm-process")]
public partial class MigrationProcessTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    /// <summary>A source VMM running the workload, its console written to a file.</summary>
    private sealed class Source : IDisposable
    {
        public VmmProcess Process { get; }
        public string Serial { get; }
        public ControlClient Control { get; }

        public Source(TempDir dir, int vcpus, int workMiB, bool waitForCounts = true, string? cmdline = null, string[]? extra = null)
        {
            Serial = dir.File("src.log");
            string sock = dir.File("src.sock");
            Process = new VmmProcess(["--vcpus", vcpus.ToString(), "--cmdline", cmdline ?? $"kvmps.run=work {workMiB}", "--serial", "file:" + Serial, "--control-socket", sock, .. extra ?? []]);
            if (waitForCounts) Assert.True(WaitForFile(Serial, t => CountLine().Matches(t).Count >= 3, Timeout), ReadText(Serial) + Process.Stderr);
            Control = new ControlClient(sock);
        }

        public int Counts => CountLine().Matches(ReadText(Serial)).Count;

        /// <summary>Polls migrate.status until <paramref name="done"/> holds.</summary>
        public JsonElement WaitForMigration(Func<JsonElement, bool> done)
        {
            var deadline = DateTime.UtcNow + Timeout;
            JsonElement status;
            while (!done(status = Control.Ok("migrate.status")) && DateTime.UtcNow < deadline) Thread.Sleep(20);
            return status;
        }

        /// <summary>The VM still runs here: the control socket answers, the state is Running and the counter moves on.</summary>
        public void AssertStillRunning()
        {
            Assert.False(Process.HasExited, Process.Stderr);
            Assert.Equal("Running", Control.Ok("status").GetProperty("state").GetString());
            int seen = Counts;
            Assert.True(WaitForFile(Serial, t => CountLine().Matches(t).Count >= seen + 3, Timeout), "the counter goes on at the source:\n" + ReadText(Serial)[^Math.Min(400, ReadText(Serial).Length)..]);
            Assert.DoesNotContain("FAILED", ReadText(Serial));
        }

        public void Dispose() { Control.Dispose(); Process.Dispose(); }
    }

    private static VmmProcess Destination(TempDir dir, string uri, int vcpus, params string[] extra) =>
        new(["--incoming", uri, "--vcpus", vcpus.ToString(), "--cmdline", "kvmps.run=work 1", "--serial", "file:" + dir.File("dst.log"), "--control-socket", dir.File("dst.sock"), .. extra]);

    /// <summary>Waits until the destination listens (its log line), so the source's connect finds it.</summary>
    private static void WaitListening(VmmProcess destination)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!destination.Stderr.Contains("waiting for a migration stream") && DateTime.UtcNow < deadline && !destination.HasExited) Thread.Sleep(10);
        Assert.Contains("waiting for a migration stream", destination.Stderr);
    }

    private static int FreeTcpPort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>Every "work: count N" line of both consoles together: 1, 2, 3, ... without a gap or a restart.</summary>
    private static int AssertCountsContinue(string before, string after)
    {
        var counts = CountLine().Matches(before + after).Select(m => long.Parse(m.Groups[1].Value)).ToList();
        for (int i = 0; i < counts.Count; i++) Assert.True(counts[i] == i + 1, $"count line {i} says {counts[i]}, expected {i + 1}");
        return counts.Count;
    }

    /// <summary>
    /// The benchmark's downtime (docs/benchmarks.md figure 10) from the two log lines: the source's vCPUs stopped, then
    /// the destination's started, within what the source reports (which also holds the pause itself and the trip back
    /// of the destination's Running message).
    /// </summary>
    private static void AssertSameClockDowntime(string sourceLog, string destinationLog)
    {
        var stopped = Regex.Match(sourceLog, @"migration: the vCPUs stopped at unix time (\d+\.\d{6}) s");
        var started = Regex.Match(destinationLog, @"migration: the received VM started at unix time (\d+\.\d{6}) s");
        Assert.True(stopped.Success && started.Success, sourceLog + destinationLog);
        var reported = Regex.Match(sourceLog, @"downtime (\d+) ms");
        double ms = (double.Parse(started.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)
            - double.Parse(stopped.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)) * 1000;
        Assert.InRange(ms, 0, long.Parse(reported.Groups[1].Value) + 1);
    }

    [Theory]
    [InlineData("unix", 1, false)]
    [InlineData("tcp", 4, false)]
    [InlineData("tcp", 1, true)] // memfd-backed RAM over TCP is copied; which pages hold data comes from SEEK_DATA
    public void ARunningGuestMovesAndGoesOnCounting(string transport, int vcpus, bool memfd)
    {
        using var dir = new TempDir();
        string uri = transport == "unix" ? "unix:" + dir.File("in.sock") : $"tcp:127.0.0.1:{FreeTcpPort()}";
        using var source = new Source(dir, vcpus, workMiB: 16, extra: memfd ? ["--memfd", "on"] : null);
        using var destination = Destination(dir, uri, vcpus);
        WaitListening(destination);
        var started = source.Control.Ok("migrate", $"\"uri\": \"{uri}\"");
        Assert.Equal(MigrationPhases.Setup, started.GetProperty("phase").GetString());

        Assert.Equal(VmmExitCode.Migrated, source.Process.WaitForExit(Timeout));
        string before = ReadText(source.Serial);
        log.WriteLine(source.Process.Stderr + destination.Stderr);
        Assert.Matches(@"migrated to .*: total \d+ ms, downtime \d+ ms", source.Process.Stderr);
        Assert.Contains("received the VM from", destination.Stderr);

        // On the destination: two full verify passes of the pattern (every page checked in the new process), the
        // counter continuing from the source's last value, and no boot.
        string dst = dir.File("dst.log");
        Assert.True(WaitForFile(dst, t => Occurrences(t, "work: verify ok pass") >= 2 || t.Contains("FAILED"), Timeout), ReadText(dst) + destination.Stderr);
        string after = ReadText(dst);
        Assert.DoesNotContain("FAILED", after);
        Assert.DoesNotContain("KvmPS built-in guest", after);
        Assert.True(AssertCountsContinue(before, after) > CountLine().Matches(before).Count, "the destination counts on");
        AssertSameClockDowntime(source.Process.Stderr, destination.Stderr);
        using var client = new ControlClient(dir.File("dst.sock"));
        var status = client.Ok("status");
        Assert.Equal("Running", status.GetProperty("state").GetString());
        Assert.Equal(1, status.GetProperty("boots").GetInt32());
        Assert.Equal(vcpus, status.GetProperty("vcpus").GetArrayLength());
        Assert.All(status.GetProperty("vcpus").EnumerateArray(), v => Assert.Equal("Running", v.GetProperty("state").GetString()));
        if (transport == "unix") Assert.False(File.Exists(dir.File("in.sock")), "the listening socket is gone");
        client.Ok("stop", "\"graceful\": false");
    }

    [GeneratedRegex(@"^work: dirty pass (\d+)\r?$", RegexOptions.Multiline)]
    private static partial Regex DirtyPassLine();

    private static List<long> DirtyPasses(string text) => DirtyPassLine().Matches(text).Select(m => long.Parse(m.Groups[1].Value)).ToList();

    /// <summary>A source running "work dirty N": the guest rewrites N MiB without end, each pass with a new generation.</summary>
    private static Source DirtyingSource(TempDir dir, int mib)
    {
        var source = new Source(dir, 1, workMiB: 1, waitForCounts: false, cmdline: $"kvmps.run=work dirty {mib}");
        Assert.True(WaitForFile(source.Serial, t => DirtyPasses(t).Count >= 2, Timeout), ReadText(source.Serial) + source.Process.Stderr);
        return source;
    }

    [Fact]
    public void AGuestRewritingMemoryAllTheTimeMovesWithEveryPageCurrent()
    {
        // Every page is rewritten about every second with a new generation; the guest's rolling check on the
        // destination catches a page the migration lost or sent stale.
        using var dir = new TempDir();
        string uri = "unix:" + dir.File("in.sock");
        using var source = DirtyingSource(dir, 2);
        using var destination = Destination(dir, uri, 1);
        WaitListening(destination);
        source.Control.Ok("migrate", $"\"uri\": \"{uri}\"");
        Assert.Equal(VmmExitCode.Migrated, source.Process.WaitForExit(Timeout));
        log.WriteLine(source.Process.Stderr);
        var before = DirtyPasses(ReadText(source.Serial));
        string dst = dir.File("dst.log");
        // Two more passes on the destination: the rolling check has gone over every page at least once there.
        Assert.True(WaitForFile(dst, t => DirtyPasses(t).Count >= 3 || t.Contains("FAILED"), Timeout), ReadText(dst) + destination.Stderr);
        string after = ReadText(dst);
        Assert.DoesNotContain("FAILED", after);
        var passes = before.Concat(DirtyPasses(after)).ToList();
        for (int i = 0; i < passes.Count; i++) Assert.Equal(i + 1, passes[i]); // the generations go on: 1, 2, 3, ...
    }

    // The convergence tests: the ring-3 dirtier rewrites 1 MiB at 2 MiB/s (paced by the guest's TSC, so the same on a
    // loaded host), twice what the 1 MiB/s link sends: every round of ~1 s finds the whole MiB dirty again.
    private const string FasterThanTheLink = "\"bandwidth_bytes_per_s\": 1048576, \"downtime_ms\": 50";

    [Fact]
    public void AGuestDirtyingFasterThanTheLinkMakesTheMigrationGiveUpCleanly()
    {
        using var dir = new TempDir();
        string uri = "unix:" + dir.File("in.sock");
        using var source = RingThreeSource(dir, 1, 2);
        using var destination = Destination(dir, uri, 1);
        WaitListening(destination);
        source.Control.Ok("migrate", $"\"uri\": \"{uri}\", {FasterThanTheLink}");
        var failed = source.WaitForMigration(s => s.GetProperty("phase").GetString() is MigrationPhases.Failed or MigrationPhases.Completed);
        log.WriteLine(failed.ToString());
        Assert.Equal(MigrationPhases.Failed, failed.GetProperty("phase").GetString());
        Assert.Contains("does not converge", failed.GetProperty("error").GetString());
        Assert.Contains("auto_converge", failed.GetProperty("error").GetString());
        Assert.False(failed.TryGetProperty("downtime_ms", out _), "never paused for a hand-over");
        Assert.Equal(VmmExitCode.IncomingFailed, destination.WaitForExit(Timeout));
        Assert.Contains("the source gave up", destination.Stderr);
        int rates = Rates(ReadText(source.Serial)).Count;
        Assert.True(WaitForFile(source.Serial, t => Rates(t).Count >= rates + 2, Timeout), "the guest goes on at the source");
        Assert.DoesNotContain("FAILED", ReadText(source.Serial));
        Assert.Equal("Running", source.Control.Ok("status").GetProperty("state").GetString());
    }

    [Fact]
    public void WithAutoConvergeTheSameGuestMoves()
    {
        using var dir = new TempDir();
        string uri = "unix:" + dir.File("in.sock");
        using var source = RingThreeSource(dir, 1, 2);
        using var destination = Destination(dir, uri, 1);
        WaitListening(destination);
        source.Control.Ok("migrate", $"\"uri\": \"{uri}\", {FasterThanTheLink}, \"auto_converge\": true");
        int maxThrottle = 0;
        var deadline = DateTime.UtcNow + Timeout;
        while (!source.Process.HasExited && DateTime.UtcNow < deadline)
        {
            try { maxThrottle = Math.Max(maxThrottle, source.Control.Ok("migrate.status").GetProperty("throttle_percent").GetInt32()); }
            catch (IOException) { break; } // the source exited between two polls
            Thread.Sleep(50);
        }
        Assert.Equal(VmmExitCode.Migrated, source.Process.WaitForExit(Timeout));
        log.WriteLine($"highest throttle seen: {maxThrottle}%\n{source.Process.Stderr}");
        Assert.True(maxThrottle > 0, "the vCPUs were throttled");
        // The bandwidth cap is for pre-copy: the last pages go out at full speed.
        var downtime = Regex.Match(source.Process.Stderr, @"downtime (\d+) ms");
        Assert.True(downtime.Success && int.Parse(downtime.Groups[1].Value) < 300, source.Process.Stderr);
        string dst = dir.File("dst.log");
        Assert.True(WaitForFile(dst, t => Occurrences(t, "work: udirty verify ok pass") >= 2 || t.Contains("FAILED") || t.Contains("exception"), Timeout), ReadText(dst) + destination.Stderr);
        Assert.DoesNotContain("FAILED", ReadText(dst));
        var passes = Rates(ReadText(source.Serial)).Concat(Rates(ReadText(dst))).Select(r => r.Pass).ToList();
        for (int i = 1; i < passes.Count; i++) Assert.True(passes[i] >= passes[i - 1], $"generation {passes[i]} after {passes[i - 1]}");
    }

    [Fact]
    public void LocalLiveUpgradePassesTheMemoryAndTheGuestRunsOnUnderANewPid()
    {
        // Guest RAM in memfds: migrate to unix: hands them over (SCM_RIGHTS), nothing is copied. Twice, so the
        // second VMM's adopted memory can be passed on again.
        using var dir = new TempDir();
        using var source = new Source(dir, 2, workMiB: 16, extra: ["--memfd", "on"]);
        int firstPid = source.Control.Ok("describe").GetProperty("pid").GetInt32();
        string before = ReadText(source.Serial);
        var vmms = new List<VmmProcess>();
        try
        {
            var previous = source.Control;
            string log1 = source.Serial;
            var logs = new List<string> { source.Serial };
            for (int hop = 1; hop <= 2; hop++)
            {
                string uri = "unix:" + dir.File($"up{hop}.sock");
                string serial = dir.File($"up{hop}.log"), sock = dir.File($"up{hop}c.sock");
                var next = new VmmProcess("--incoming", uri, "--vcpus", "2", "--memfd", "on", "--cmdline", "kvmps.run=work 1", "--serial", "file:" + serial, "--control-socket", sock);
                vmms.Add(next);
                WaitListening(next);
                previous.Ok("migrate", $"\"uri\": \"{uri}\"");
                var exited = hop == 1 ? source.Process : vmms[hop - 2];
                Assert.Equal(VmmExitCode.Migrated, exited.WaitForExit(Timeout));
                log.WriteLine(exited.Stderr + next.Stderr);
                Assert.Contains("memory passed as memfds (not copied)", exited.Stderr);
                var sent = System.Text.RegularExpressions.Regex.Match(exited.Stderr, @"migrated to .*?: total \d+ ms, downtime (\d+) ms, (\d+) bytes");
                Assert.True(sent.Success, exited.Stderr);
                Assert.True(long.Parse(sent.Groups[2].Value) < 1 << 20, $"only the state went over the socket: {sent.Groups[2].Value} bytes");
                Assert.Contains("memory passed as memfds", next.Stderr);
                previous = new ControlClient(sock);
                Assert.NotEqual(firstPid, previous.Ok("describe").GetProperty("pid").GetInt32());
                Assert.Equal(next.Pid, previous.Ok("describe").GetProperty("pid").GetInt32());
                logs.Add(serial);
                Assert.True(WaitForFile(serial, t => Occurrences(t, "work: verify ok pass") >= 2 || t.Contains("FAILED"), Timeout), ReadText(serial) + next.Stderr);
            }
            string all = string.Concat(logs.Select(ReadText));
            Assert.DoesNotContain("FAILED", all);
            Assert.Equal(1, Occurrences(all, "KvmPS built-in guest")); // booted once, in the first VMM
            AssertCountsContinue(all, "");
            var status = previous.Ok("status");
            Assert.Equal("Running", status.GetProperty("state").GetString());
            Assert.Equal(2, status.GetProperty("vcpus").GetArrayLength());
        }
        finally { foreach (var v in vmms) v.Dispose(); }
    }

    [Fact]
    public void CancelMidwayLeavesTheVmRunningOnTheSource()
    {
        using var dir = new TempDir();
        string uri = "unix:" + dir.File("in.sock");
        using var source = new Source(dir, 1, workMiB: 16);
        using var destination = Destination(dir, uri, 1);
        WaitListening(destination);
        // 1 MiB/s: round 0 alone takes over 16 s, so the cancel lands mid-way.
        source.Control.Ok("migrate", $"\"uri\": \"{uri}\", \"bandwidth_bytes_per_s\": 1048576");
        source.WaitForMigration(s => s.GetProperty("sent_pages").GetInt64() > 256);
        // A second migration, or a snapshot (it would harvest the dirty log under the migration), waits its turn.
        Assert.Equal("InvalidState", source.Control.Request("migrate", $"\"uri\": \"{uri}\"").GetProperty("error").GetProperty("code").GetString());
        var snapshot = source.Control.Request("snapshot.create", $"\"path\": \"{dir.File("snap")}\", \"disks\": \"ignore\"");
        Assert.Equal("InvalidState", snapshot.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("during a migration", snapshot.GetProperty("error").GetProperty("message").GetString());
        Assert.False(Directory.Exists(dir.File("snap")));
        var cancelled = source.Control.Ok("migrate.cancel");
        Assert.Equal(MigrationPhases.Cancelled, cancelled.GetProperty("phase").GetString());
        Assert.Contains("cancelled", cancelled.GetProperty("error").GetString());
        source.AssertStillRunning();
        // The destination saw the stream end early: it refuses it and leaves nothing behind.
        Assert.Equal(VmmExitCode.IncomingFailed, destination.WaitForExit(Timeout));
        Assert.Contains("truncated", destination.Stderr);
        Assert.False(File.Exists(dir.File("in.sock")));
        Assert.False(File.Exists(dir.File("dst.sock")));
        var again = source.Control.Request("migrate.cancel");
        Assert.Equal("InvalidState", again.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public void KillingTheDestinationMidwayLeavesTheVmRunningOnTheSource()
    {
        using var dir = new TempDir();
        string uri = "unix:" + dir.File("in.sock");
        using var source = new Source(dir, 1, workMiB: 16);
        using var destination = Destination(dir, uri, 1);
        WaitListening(destination);
        source.Control.Ok("migrate", $"\"uri\": \"{uri}\", \"bandwidth_bytes_per_s\": 1048576");
        source.WaitForMigration(s => s.GetProperty("sent_pages").GetInt64() > 256);
        destination.Signal(9);
        var failed = source.WaitForMigration(s => s.GetProperty("phase").GetString() is MigrationPhases.Failed or MigrationPhases.Completed);
        log.WriteLine(failed.ToString());
        Assert.Equal(MigrationPhases.Failed, failed.GetProperty("phase").GetString());
        Assert.Contains("connection failed", failed.GetProperty("error").GetString());
        source.AssertStillRunning();
        Assert.Contains("the VM runs on here", source.Process.Stderr);
    }

    [Fact]
    public void AMismatchedDeviceSetIsRefusedAndTheSourceKeepsTheVm()
    {
        using var dir = new TempDir();
        string uri = "unix:" + dir.File("in.sock");
        using var source = new Source(dir, 1, workMiB: 4);
        using var destination = Destination(dir, uri, 1, "--device", "rng");
        WaitListening(destination);
        source.Control.Ok("migrate", $"\"uri\": \"{uri}\"");
        var failed = source.WaitForMigration(s => s.GetProperty("phase").GetString() is MigrationPhases.Failed or MigrationPhases.Completed);
        Assert.Equal(MigrationPhases.Failed, failed.GetProperty("phase").GetString());
        string error = failed.GetProperty("error").GetString()!;
        Assert.Contains("the destination refused", error);
        Assert.Contains("device 00:01.0 rng", error);
        Assert.Equal(0, failed.GetProperty("sent_pages").GetInt64()); // refused before any memory moved
        Assert.Equal(VmmExitCode.IncomingFailed, destination.WaitForExit(Timeout));
        Assert.Contains("does not match", destination.Stderr);
        source.AssertStillRunning();
    }

    [Fact]
    public void ADestinationThatBreaksTheStreamLeavesTheVmRunningOnTheSource()
    {
        // A fake destination: answers Ready, reads for a while, then sends garbage instead of "running".
        using var dir = new TempDir();
        string path = dir.File("fake.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        TestJail.GiveToJailUser(path); // a jailed source connects as the jail's user, as to a receiving VMM's socket
        using var source = new Source(dir, 1, workMiB: 4);
        source.Control.Ok("migrate", $"\"uri\": \"unix:{path}\"");
        using var peer = listener.Accept();
        var buffer = new byte[1 << 16];
        int got = peer.Receive(buffer);
        Assert.True(got >= 16 && buffer.AsSpan(0, 8).SequenceEqual("KVMPSMIG"u8), "the source starts with the header");
        peer.Send(Frame(2, [])); // Ready
        for (int i = 0; i < 20; i++) peer.Receive(buffer);
        var garbage = Frame(7, []);
        garbage[^1] ^= 0xff; // a "running" frame with a bad CRC
        peer.Send(garbage);
        peer.Dispose();
        var failed = source.WaitForMigration(s => s.GetProperty("phase").GetString() is MigrationPhases.Failed or MigrationPhases.Completed);
        Assert.Equal(MigrationPhases.Failed, failed.GetProperty("phase").GetString());
        Assert.Matches("CRC-32 mismatch|connection failed|truncated", failed.GetProperty("error").GetString());
        source.AssertStillRunning();
    }

    private static byte[] Frame(uint command, byte[] payload)
    {
        var f = new byte[8 + payload.Length + 4];
        BinaryPrimitives.WriteUInt32LittleEndian(f, command);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(4), (uint)payload.Length);
        payload.CopyTo(f, 8);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(8 + payload.Length), Crc32.HashToUInt32(f.AsSpan(0, 8 + payload.Length)));
        return f;
    }

    private static byte[] Header(uint version)
    {
        var h = new byte[16];
        "KVMPSMIG"u8.CopyTo(h);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), version);
        return h;
    }

    public static IEnumerable<object[]> BadStreams() =>
    [
        ["version", Header(7), "format version 7"],
        ["magic", "NOTASTREAM......"u8.ToArray(), "no KVMPSMIG magic"],
        ["truncated", Header(1).Concat(Frame(1, new byte[40])[..20]).ToArray(), "truncated"],
        ["corrupt", Header(1).Concat(Corrupt(Frame(1, new byte[40]))).ToArray(), "CRC-32 mismatch"],
    ];

    private static byte[] Corrupt(byte[] frame) { frame[12] ^= 0x10; return frame; }

    [Theory]
    [MemberData(nameof(BadStreams))]
    public void TheReceiverRefusesABadStreamAndLeavesNothingBehind(string what, byte[] stream, string expected)
    {
        using var dir = new TempDir();
        string path = dir.File("in.sock");
        using var destination = Destination(dir, "unix:" + path, 1);
        WaitListening(destination);
        using (var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            s.Connect(new UnixDomainSocketEndPoint(path));
            s.Send(stream);
            s.Shutdown(SocketShutdown.Send);
            Assert.Equal(VmmExitCode.IncomingFailed, destination.WaitForExit(Timeout));
        }
        log.WriteLine($"{what}: {destination.Stderr}");
        Assert.Contains(expected, destination.Stderr);
        Assert.Contains("receiving the VM from unix:", destination.Stderr);
        Assert.False(File.Exists(path), "the listening socket is removed");
        Assert.False(File.Exists(dir.File("dst.sock")), "the control socket is removed");
        Assert.Equal("", ReadText(dir.File("dst.log"))); // no guest ever ran
    }
}
