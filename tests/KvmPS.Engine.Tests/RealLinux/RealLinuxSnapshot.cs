using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.RealLinux;

/// <summary>
/// Issue 11's real-Linux snapshot check, run on a booted RealLinux guest with a virtio-net tap, a qcow2 virtio-blk
/// disk and vsock: the agent's <c>workload</c> (a record written to the disk with fsync, then a ping, round after
/// round) runs while <c>snapshot.create</c> takes memory and an internal qcow2 snapshot; the VM runs on past the
/// snapshot, then kvmps-vmm is killed with SIGKILL and a new process restores the snapshot (paused, so the disk can
/// be read first). The disk is back at the snapshot's instant, the agent answers on the serial console and over
/// vsock (a new connection after the transport reset), the workload goes on writing and pinging through the
/// re-opened tap, what Linux reads back from the disk is what its restored memory says it wrote, the host finds the
/// same records, and <c>qemu-img check</c> is clean.
/// </summary>
internal sealed partial class RealLinuxSnapshot(ITestOutputHelper log, string netns, TempDir dir, string qcow2, string vsockPath)
{
    // The agent's workload layout (tools/linux-guest/initramfs/bin/agent: WL_SLOTS, WL_RECORD).
    internal const int Slots = 64, RecordBytes = 4096;
    /// <summary>A round is two fork+execs (dd, ping) of about 2 s each, far more when the host is shared.</summary>
    internal static readonly TimeSpan RoundsTimeout = TimeSpan.FromMinutes(8);

    internal sealed record WorkloadStatus(string State, long Count, long PingsOk, long PingsLost, string? Error)
    {
        public static WorkloadStatus Parse(IReadOnlyList<string> reply)
        {
            var f = LinuxGuest.Fields(reply, "workload");
            return new WorkloadStatus(f["state"], long.Parse(f["count"], CultureInfo.InvariantCulture),
                long.Parse(f["pings_ok"], CultureInfo.InvariantCulture), long.Parse(f["pings_lost"], CultureInfo.InvariantCulture),
                f.GetValueOrDefault("error"));
        }
    }

    public void Run(LinuxGuest guest, string disk, string peer)
    {
        var clock = Stopwatch.StartNew();
        Assert.Contains(guest.Run($"workload start {disk} {peer}"), l => l.StartsWith("workload started "));
        var before = WaitForRounds(c => guest.Run(c), w => w.Count >= 2 && w.PingsOk >= 1, "before the snapshot");
        log.WriteLine($"workload before the snapshot: {before} ({clock.Elapsed.TotalSeconds:F0} s)");

        string snapshot = dir.File("snap");
        JsonElement reply;
        using (var control = new ControlClient(guest.ControlSocket))
        {
            control.Stream.ReadTimeout = 180_000; // 256 MiB of guest memory written on a shared host
            reply = control.Ok("snapshot.create", $"\"path\": \"{snapshot}\"");
        }
        log.WriteLine($"snapshot.create: {reply}");
        Assert.Equal("Running", reply.GetProperty("vm_state").GetString());
        Assert.Equal(1, reply.GetProperty("disk_snapshots").GetArrayLength());
        // The snapshot holds at most this many records (the loop counts a record once its write is done).
        var atSnapshot = WorkloadStatus.Parse(guest.Run("workload status"));

        // The first process goes on past the snapshot, writing records the restored disk must not hold, then dies.
        var past = WaitForRounds(c => guest.Run(c), w => w.Count >= atSnapshot.Count + 2, "after the snapshot");
        guest.Kill();
        var killed = ReadRecords(forceShare: false);
        log.WriteLine($"killed at {past}; the disk holds records up to {killed.Max} ({clock.Elapsed.TotalSeconds:F0} s)");
        Assert.True(killed.Max >= atSnapshot.Count + 2, $"the disk of the killed VM holds records up to {killed.Max}, expected {atSnapshot.Count + 2} or more");

        var sw = Stopwatch.StartNew();
        using var restored = LinuxGuest.Restore(dir, snapshot, netns, "--paused");
        using (var control = new ControlClient(restored.ControlSocket, TimeSpan.FromMinutes(2)))
        {
            var status = control.WaitForState("Paused", TimeSpan.FromMinutes(2));
            Assert.True(status.GetProperty("state").GetString() == "Paused", $"{status}\n{restored.Diagnostics()}");
            log.WriteLine($"restored (paused) in {sw.Elapsed.TotalSeconds:F1} s: {restored.Stderr.Trim()}");
            // Before the VM runs, the disk is back at the snapshot: none of the records written after it.
            var reverted = ReadRecords(forceShare: true);
            log.WriteLine($"slots 0-15 killed: [{string.Join(' ', killed.Numbers.Take(16))}], reverted: [{string.Join(' ', reverted.Numbers.Take(16))}]");
            Assert.True(reverted.Max <= atSnapshot.Count + 1 && reverted.Max < killed.Max,
                $"after the restore the disk holds records up to {reverted.Max}; the snapshot was taken at {atSnapshot.Count} or before, the killed VM wrote up to {killed.Max}");
            Assert.Equal("Running", control.Ok("resume").GetProperty("state").GetString());
        }

        // The restored agent answers on the serial console, with the workload's state from before the kill.
        var first = WorkloadStatus.Parse(restored.Run("workload status"));
        log.WriteLine($"first answer after the restore: {first} ({sw.Elapsed.TotalSeconds:F1} s after the restore started)");
        Assert.Equal("running", first.State);
        Assert.True(first.Count >= before.Count, $"the workload's count went back from {before.Count} to {first.Count}");
        // It goes on: more records, and pings answered through the re-opened tap.
        var goingOn = WaitForRounds(c => restored.Run(c), w => w.Count >= first.Count + 2 && w.PingsOk > first.PingsOk, "after the restore");
        log.WriteLine($"workload after the restore: {goingOn}");

        // vsock: the connections of the killed VM are gone (transport reset); the agent server accepts new ones.
        using (var agent = restored.ConnectVsockAgent(vsockPath))
        {
            Assert.Equal(new[] { "echo after restore" }, agent.Run("echo after restore"));
            var overVsock = WorkloadStatus.Parse(agent.Run("workload status"));
            Assert.True(overVsock.Count >= goingOn.Count, $"over vsock the count is {overVsock.Count}, on the console it was {goingOn.Count}");
        }

        var stopped = WorkloadStatus.Parse(restored.Run("workload stop", TimeSpan.FromMinutes(12)));
        Assert.Equal("stopped", stopped.State);
        Assert.Null(stopped.Error);
        // The guest's own check is asserted after the host's, so that a failure shows what the image holds.
        var (verifyRc, verifyReply) = restored.RunForRc("workload verify");
        var verify = LinuxGuest.Fields(verifyReply, "workload");
        log.WriteLine($"workload stopped: {stopped}; verify (rc={verifyRc}): {string.Join(' ', verify.Select(kv => $"{kv.Key}={kv.Value}"))}");
        restored.Run("poweroff");
        Assert.Equal(0, restored.WaitForExit(TimeSpan.FromSeconds(90)));

        // On the host: a clean image holding, slot by slot, the last record the restored loop wrote there.
        log.WriteLine(QemuImg("check", qcow2));
        log.WriteLine(QemuImg("snapshot", "-l", qcow2));
        RealLinuxTests.Exec("qemu-img", "check", "-q", qcow2);
        var final = ReadRecords(forceShare: false);
        var expected = new long[Slots];
        for (int slot = 0; slot < Slots; slot++)
        {
            long n = stopped.Count - ((stopped.Count - slot) % Slots + Slots) % Slots;
            expected[slot] = n < 1 ? 0 : n; // never written since the start filled every slot with record 0
        }
        Assert.True(expected.SequenceEqual(final.Numbers),
            $"the image's slots hold records [{string.Join(' ', final.Numbers)}], expected [{string.Join(' ', expected)}] (last record {stopped.Count})");
        Assert.Equal(verify["disk_sha256"], final.Sha256);
        Assert.True(verifyRc == 0 && verify["ok"] == "1", $"Linux reads back other records than it wrote: {string.Join(' ', verifyReply)}");
        Assert.Equal(stopped.Count.ToString(CultureInfo.InvariantCulture), verify["count"]);
        log.WriteLine($"snapshot check done in {clock.Elapsed.TotalSeconds:F0} s");
    }

    private static string QemuImg(params string[] args)
    {
        var psi = new ProcessStartInfo("qemu-img") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return $"qemu-img {string.Join(' ', args)} (exit {p.ExitCode}):\n{output.TrimEnd()}";
    }

    /// <summary>Polls <c>workload status</c> until <paramref name="until"/> holds; a stopped or failed loop ends the wait.</summary>
    internal static WorkloadStatus WaitForRounds(Func<string, IReadOnlyList<string>> run, Func<WorkloadStatus, bool> until, string when)
    {
        var deadline = DateTime.UtcNow + RoundsTimeout;
        while (true)
        {
            var status = WorkloadStatus.Parse(run("workload status"));
            if (status.State != "running" || status.Error is not null)
                throw new InvalidOperationException($"the workload ended {when}: {status}");
            if (until(status)) return status;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the workload did not get far enough {when} within {RoundsTimeout}: {status}");
            Thread.Sleep(3000);
        }
    }

    internal sealed record DiskRecords(long[] Numbers, string Sha256)
    {
        public long Max => Numbers.Max();
    }

    [GeneratedRegex(@"^kvmps-workload (\d+) (\S+)$")]
    private static partial Regex RecordPattern();

    /// <summary>
    /// The workload's slots as the host reads them (qemu-img convert to raw; <paramref name="forceShare"/> while a
    /// kvmps-vmm has the image open): the record number in each, and the SHA-256 of the whole area.
    /// </summary>
    internal DiskRecords ReadRecords(bool forceShare)
    {
        string raw = dir.File("w.raw");
        File.Delete(raw);
        var args = new List<string> { "convert" };
        if (forceShare) args.Add("-U");
        args.AddRange(["-O", "raw", qcow2, raw]);
        RealLinuxTests.Exec("qemu-img", [.. args]);
        byte[] area = new byte[Slots * RecordBytes];
        using (var f = File.OpenRead(raw)) f.ReadExactly(area);
        File.Delete(raw);
        var numbers = new long[Slots];
        for (int slot = 0; slot < Slots; slot++)
        {
            var record = area.AsSpan(slot * RecordBytes, RecordBytes);
            string text = Encoding.ASCII.GetString(record[..^1]).TrimEnd(' ');
            var m = RecordPattern().Match(text);
            Assert.True(record[^1] == (byte)'\n' && m.Success, $"slot {slot} of {qcow2} is not a workload record: '{text[..Math.Min(text.Length, 80)]}' (first 96 bytes: {Convert.ToHexString(record[..96])})");
            numbers[slot] = long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            Assert.True(numbers[slot] % Slots == slot || numbers[slot] == 0, $"slot {slot} holds record {numbers[slot]}");
        }
        return new DiskRecords(numbers, RealLinuxTests.Sha(area));
    }
}
