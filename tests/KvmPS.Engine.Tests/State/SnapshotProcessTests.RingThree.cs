using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Support;
using Xunit;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.State;

/// <summary>
/// A snapshot taken while the vCPU runs in ring 3 (the built-in guest's "work udirty", guest/src/udirty.c): the
/// restored VM goes on in ring 3 (task register, ring-3 segments, the kernel stack the TSS names) with every page it
/// dirtied as it was.
/// </summary>
public partial class SnapshotProcessTests
{
    [GeneratedRegex(@"^work: udirty rate (\d+) KiB/s pass (\d+)", RegexOptions.Multiline)]
    private static partial Regex UdirtyRateLine();

    [Fact]
    public void ASnapshotOfAGuestInRingThreeRestoresAndGoesOnDirtying()
    {
        using var dir = new TempDir();
        string serial = dir.File("before.log"), sock = dir.File("a.sock"), snapshot = dir.File("snap");
        using (var vmm = new VmmProcess("--memory", "256M", "--cmdline", "kvmps.run=work udirty 4 8", "--serial", "file:" + serial, "--control-socket", sock))
        {
            // 4 MiB at 8 MiB/s: a pass every half second; wait for a checked pass of written generations.
            Assert.True(WaitForFile(serial, t => t.Contains("work: udirty verify ok pass") && UdirtyRateLine().Matches(t).Count >= 2 || t.Contains("FAILED"), Timeout), ReadText(serial) + vmm.Stderr);
            using var client = new ControlClient(sock);
            client.Ok("snapshot.create", $"\"path\": \"{snapshot}\", \"resume\": false");
            vmm.Signal(9);
            vmm.WaitForExit(Timeout);
        }
        string before = ReadText(serial);
        long lastPass = UdirtyRateLine().Matches(before).Select(m => long.Parse(m.Groups[2].Value)).Last();

        string after = dir.File("after.log");
        using var restored = new VmmProcess("--restore", snapshot, "--serial", "file:" + after, "--control-socket", dir.File("b.sock"));
        Assert.True(WaitForFile(after, t => Occurrences(t, "work: udirty verify ok pass") >= 2 && UdirtyRateLine().Matches(t).Count >= 2 || t.Contains("FAILED") || t.Contains("exception"), Timeout), ReadText(after) + restored.Stderr);
        string text = ReadText(after);
        log.WriteLine(text);
        Assert.DoesNotContain("FAILED", text);
        Assert.DoesNotContain("KvmPS built-in guest v1", text);
        var rates = UdirtyRateLine().Matches(text).Select(m => (KiBps: long.Parse(m.Groups[1].Value), Pass: long.Parse(m.Groups[2].Value))).ToList();
        Assert.True(rates[0].Pass >= lastPass, $"the generations go on: {rates[0].Pass} after {lastPass}");
        Assert.All(rates, r => Assert.True(r.KiBps > 0 && r.KiBps <= 8 * 1024 * 11 / 10, $"{r.KiBps} KiB/s against 8 MiB/s"));
    }
}
