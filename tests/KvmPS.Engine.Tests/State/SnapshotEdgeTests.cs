using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using KvmPS.Engine.Tests.Devices;
using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.State;

/// <summary>
/// Snapshot edge cases through the kvmps-vmm binary (issue 11, docs/snapshots.md): a snapshot with the balloon
/// inflated, a snapshot that runs out of disk space, and a restore whose config.json gives the devices a new MAC and
/// vsock CID (a clone made by Import-KvmVm -Copy -GenerateNewId).
/// </summary>
[Collection("vmm-process")]
public partial class SnapshotEdgeTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private const long MiB = 1 << 20;

    private static List<long> Counts(string text) => CountLine().Matches(text).Select(m => long.Parse(m.Groups[1].Value)).ToList();

    /// <summary>Types <paramref name="command"/> on the attached console and waits for <paramref name="expect"/> in the serial log after it.</summary>
    private static void Type(ControlClient console, string serial, string command, string expect)
    {
        int from = ReadText(serial).Length;
        console.Stream.Write(Encoding.ASCII.GetBytes(command));
        Assert.True(WaitForFile(serial, t => t.Length > from && t.IndexOf(expect, from, StringComparison.Ordinal) >= 0, Timeout),
            $"no '{expect}' after typing '{command.Trim()}':\n{ReadText(serial)[from..]}");
    }

    private static ControlClient AttachConsole(string sock)
    {
        var console = new ControlClient(sock);
        Assert.True(console.Ok("console.attach").GetProperty("attached").GetBoolean());
        return console;
    }

    /// <summary>Bytes the file system allocated for <paramref name="path"/> (st_blocks × 512): a sparse file's holes take none.</summary>
    private static long AllocatedBytes(string path)
    {
        using var stat = Process.Start(new ProcessStartInfo("stat", ["-c", "%b %B", path]) { RedirectStandardOutput = true })!;
        string[] parts = stat.StandardOutput.ReadToEnd().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        stat.WaitForExit();
        return long.Parse(parts[0]) * long.Parse(parts[1]);
    }

    [Fact]
    public void ASnapshotWithTheBalloonInflatedRestoresItsSizeAndDeflatesAfterwards()
    {
        using var dir = new TempDir();
        string serial = dir.File("before.log"), sock = dir.File("a.sock"), snapshot = dir.File("snap");
        JsonElement reply;
        string before;
        using (var vmm = new VmmProcess("--memory", "256M", "--device", "balloon", "--serial", "file:" + serial, "--control-socket", sock))
        using (var client = new ControlClient(sock))
        {
            client.WaitForState("Running", Timeout);
            using var console = AttachConsole(sock);
            Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial) + vmm.Stderr);
            // The pages the balloon takes next get a non-zero byte first: only the balloon's discard makes them holes.
            Type(console, serial, "mem touch 64\r", "mem: touched 65536 KiB");
            Assert.Equal(64 * MiB, client.Ok("balloon.set", $"\"target_bytes\": {64 * MiB}").GetProperty("target_bytes").GetInt64());
            Type(console, serial, "balloon\r", "balloon: actual 16384");
            Type(console, serial, "work 4\r", "work: verify ok pass 1");
            Assert.True(WaitForFile(serial, t => Counts(t).Count >= 20, Timeout), ReadText(serial));
            reply = client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"resume\": false").Clone();
            before = ReadText(serial);
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }
        log.WriteLine($"snapshot.create: {reply}");

        // The 64 MiB the guest touched and then gave to the balloon are holes in memory.bin: without the discard they
        // would be data (one 0x5a byte per page). What is left is the 4 MiB pattern, the guest's code and the balloon's page lists.
        string memoryFile = Path.Combine(snapshot, "memory.bin");
        long memoryBytes = reply.GetProperty("memory_bytes").GetInt64();
        long allocated = AllocatedBytes(memoryFile);
        log.WriteLine($"memory.bin: {memoryBytes / MiB} MiB data written, {allocated / MiB} MiB allocated, {new FileInfo(memoryFile).Length / MiB} MiB long");
        Assert.True(memoryBytes < 16 * MiB, $"{memoryBytes / MiB} MiB of data: the ballooned pages were written");
        Assert.True(allocated < 16 * MiB, $"{allocated / MiB} MiB allocated: memory.bin is not sparse over the ballooned pages");

        string after = dir.File("after.log"), sock2 = dir.File("b.sock");
        using var restored = new VmmProcess("--restore", snapshot, "--serial", "file:" + after, "--control-socket", sock2);
        Assert.True(WaitForFile(after, t => Occurrences(t, "work: verify ok pass") >= 2 || t.Contains("FAILED"), Timeout), ReadText(after) + restored.Stderr);
        Assert.DoesNotContain("FAILED", ReadText(after));
        var counts = Counts(before + ReadText(after));
        for (int i = 0; i < counts.Count; i++) Assert.Equal(i + 1, counts[i]); // the counter continued, no restart, no gap

        using var client2 = new ControlClient(sock2);
        var balloon = client2.Ok("balloon.get");
        log.WriteLine($"balloon.get after the restore: {balloon}");
        Assert.Equal(64 * MiB, balloon.GetProperty("target_bytes").GetInt64());
        Assert.Equal(64 * MiB, balloon.GetProperty("actual_bytes").GetInt64());

        using var console2 = AttachConsole(sock2);
        Type(console2, after, "q", "work: stopped at");
        client2.Ok("balloon.set", "\"target_bytes\": 0");
        Type(console2, after, "balloon\r", "balloon: actual 0");
        Assert.Equal(0, client2.Ok("balloon.get").GetProperty("actual_bytes").GetInt64());
        Type(console2, after, "mem touch 128\r", "mem: touched 131072 KiB"); // the deflated pages are usable again
        Type(console2, after, "work verify\r", "work: verify ok 4 MiB");
        Assert.DoesNotContain("needs reset", restored.Stderr);
    }

    [Fact]
    public void OutOfSpaceWhileWritingASnapshotLeavesNothingAndTheVmRunsOn()
    {
        using var dir = new TempDir();
        string small = dir.File("small");
        Directory.CreateDirectory(small);
        var mount = Process.Start("mount", ["-t", "tmpfs", "-o", "size=2m", "kvmps-test", small])!;
        mount.WaitForExit();
        Assert.Equal(0, mount.ExitCode);
        try
        {
            string serial = dir.File("a.log"), sock = dir.File("a.sock");
            using var vmm = new VmmProcess("--memory", "256M", "--cmdline", "kvmps.run=work 4", "--serial", "file:" + serial, "--control-socket", sock);
            Assert.True(WaitForFile(serial, t => t.Contains("work: count 3"), Timeout), ReadText(serial) + vmm.Stderr);
            using var client = new ControlClient(sock);
            string target = Path.Combine(small, "snap");
            var failed = client.Request("snapshot.create", $"\"path\": \"{target}\"");
            log.WriteLine(failed.ToString());
            Assert.False(failed.GetProperty("ok").GetBoolean());
            string message = failed.GetProperty("error").GetProperty("message").GetString()!;
            Assert.Contains(target, message);
            Assert.Contains("No space left on device", message);
            Assert.Empty(Directory.GetFileSystemEntries(small)); // no partial snapshot, no temporary directory

            Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
            int seen = Counts(ReadText(serial)).Count;
            Assert.True(WaitForFile(serial, t => Counts(t).Count >= seen + 5, Timeout), "the VM runs on after the failed snapshot");
            Assert.DoesNotContain("FAILED", ReadText(serial));

            // The same VM can still be snapshotted where there is room.
            var ok = client.Ok("snapshot.create", $"\"path\": \"{dir.File("roomy")}\"");
            Assert.Equal("Running", ok.GetProperty("vm_state").GetString());
        }
        finally
        {
            Process.Start("umount", ["-l", small])!.WaitForExit();
        }
    }
    /// <summary>kvmps-vmm inside a network namespace (its tap lives there), stderr captured.</summary>
    private static Process StartInNetNs(NetNs ns, StringBuilder stderr, params string[] args)
    {
        var p = ns.Start([VmmBinary.Executable, .. args]);
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        p.OutputDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        return p;
    }

    /// <summary>
    /// A clone (Import-KvmVm -Copy -GenerateNewId) is restored from a snapshot whose config.json has a new MAC and vsock
    /// CID while state.bin still records the old ones: the devices take config.json's, and the guest learns the new
    /// CID from the transport reset. The guest keeps the MAC it read at probe time (docs/en-US/Import-KvmVm.md).
    /// </summary>
    [NetNsFact]
    public void ARestoreTakesTheMacAndVsockCidFromConfigJsonOverTheStateRecord()
    {
        using var dir = new TempDir();
        using var ns = new NetNs();
        string serial = dir.File("a.log"), sock = dir.File("a.sock"), snapshot = dir.File("snap");
        var stderr = new StringBuilder();
        using (var vmm = StartInNetNs(ns, stderr, "--device", "net,tap=kvtc0,mac=52:54:00:00:00:07", "--device", $"vsock,guest_cid=7,uds_path={dir.File("v.sock")}",
                   "--serial", "file:" + serial, "--control-socket", sock))
        {
            try
            {
                using var client = new ControlClient(sock);
                client.WaitForState("Running", Timeout);
                using var console = AttachConsole(sock);
                Assert.True(WaitForFile(serial, t => t.Contains("ready"), Timeout), ReadText(serial) + stderr);
                Type(console, serial, "net info\r", "net: mac 52:54:00:00:00:07");
                Type(console, serial, "vsock cid\r", "vsock: cid 7");
                client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"resume\": false");
            }
            finally
            {
                vmm.Kill();
                vmm.WaitForExit(10_000);
            }
        }

        // What Import-KvmVm -GenerateNewId does to the clone's config.json (ExportedVmRewriter.MapVmmConfig).
        string configPath = Path.Combine(snapshot, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        foreach (var device in config["devices"]!.AsArray())
        {
            if ((string?)device!["type"] == "net") device["mac"] = "52:54:00:00:00:08";
            if ((string?)device!["type"] == "vsock") device["guest_cid"] = 9;
        }
        File.WriteAllText(configPath, config.ToJsonString());

        string after = dir.File("b.log"), sock2 = dir.File("b.sock");
        var stderr2 = new StringBuilder();
        using var restored = StartInNetNs(ns, stderr2, "--restore", snapshot, "--serial", "file:" + after, "--control-socket", sock2);
        try
        {
            using var client2 = new ControlClient(sock2, TimeSpan.FromSeconds(30));
            Assert.Equal("Running", client2.WaitForState("Running", Timeout).GetProperty("state").GetString());
            var devices = client2.Ok("describe").GetProperty("devices").EnumerateArray().ToList();
            log.WriteLine(string.Join("\n", devices));
            Assert.Equal("52:54:00:00:00:08", devices.Single(d => d.GetProperty("type").GetString() == "net").GetProperty("mac").GetString());
            Assert.Equal(9, devices.Single(d => d.GetProperty("type").GetString() == "vsock").GetProperty("guest_cid").GetInt64());
            // The restored NIC announced its MAC on the new tap (RARP broadcasts, which the host side counts as
            // received); the idle guest itself sent nothing.
            var (code, rx) = ns.Exec(TimeSpan.FromSeconds(10), "cat", "/sys/class/net/kvtc0/statistics/rx_packets");
            Assert.True(code == 0 && long.Parse(rx.Trim(), System.Globalization.CultureInfo.InvariantCulture) >= KvmPS.Devices.Virtio.Net.VirtioNet.Announcements, $"rx_packets of the restored VM's tap: {rx}");
            using var console2 = AttachConsole(sock2);
            Type(console2, after, "vsock cid\r", "vsock: cid 9");
            Assert.Contains("vsock: transport reset (cid 9)", ReadText(after));
            // The guest keeps the MAC it read at probe time; the device's config space has the new one.
            Type(console2, after, "net info\r", "net: mac 52:54:00:00:00:07");
        }
        finally
        {
            log.WriteLine(stderr2.ToString());
            restored.Kill();
            restored.WaitForExit(10_000);
        }
    }
}
