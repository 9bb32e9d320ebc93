using System.Text.Json;
using System.Text.RegularExpressions;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using Xunit;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Migration;

/// <summary>
/// The built-in guest's ring-3 dirtier, "work udirty MiB RATE" (guest/src/udirty.c): it dirties memory at a set rate
/// in hardware (hosts that emulate guest kernel code still run ring 3 natively), the VMM's dirty log sees that rate,
/// and a VM whose vCPU runs in ring 3 moves with every page current. The convergence tests use it too: its rate is
/// a property of the guest, not of how fast this host emulates.
/// </summary>
public partial class MigrationProcessTests
{
    [GeneratedRegex(@"^work: udirty rate (\d+) KiB/s pass (\d+)", RegexOptions.Multiline)]
    private static partial Regex RateLine();

    private static List<(long KiBps, long Pass)> Rates(string text) =>
        RateLine().Matches(text).Select(m => (long.Parse(m.Groups[1].Value), long.Parse(m.Groups[2].Value))).ToList();

    /// <summary>A source running "work udirty MiB RATE", once it has reported its rate twice.</summary>
    private static Source RingThreeSource(TempDir dir, int mib, int rateMiBps)
    {
        var source = new Source(dir, 1, workMiB: 1, waitForCounts: false, cmdline: $"kvmps.run=work udirty {mib} {rateMiBps}");
        Assert.True(WaitForFile(source.Serial, t => Rates(t).Count >= 2 || t.Contains("FAILED") || t.Contains("exception"), Timeout), ReadText(source.Serial) + source.Process.Stderr);
        Assert.Contains($"work: udirty {mib} MiB", ReadText(source.Serial));
        return source;
    }

    [Fact]
    public void TheRingThreeDirtierRunsAtHardwareSpeed()
    {
        // Flat out: one store per page from ring 3. The kernel-mode dirtier reached ~5.6 MiB/s on this host.
        using var dir = new TempDir();
        using var source = RingThreeSource(dir, 16, 0);
        var rates = Rates(ReadText(source.Serial));
        log.WriteLine(string.Join(", ", rates.Select(r => $"{r.KiBps} KiB/s")));
        Assert.All(rates, r => Assert.True(r.KiBps > 200 * 1024, $"flat out: {r.KiBps} KiB/s"));
        Assert.DoesNotContain("FAILED", ReadText(source.Serial));
    }

    [Fact]
    public void TheRingThreeDirtierKeepsItsRateTheDirtyLogSeesItAndTheVmMovesWithEveryPageCurrent()
    {
        // 16 MiB at 4 MiB/s: a pass every 4 s, so a round of up to 4 s dirties distinct pages only and the dirty log's
        // count over the round is the rate. The 8 MiB/s cap makes round 0 (~18 MiB) last ~2 s.
        const int RateMiBps = 4;
        using var dir = new TempDir();
        string uri = "unix:" + dir.File("in.sock");
        using var source = RingThreeSource(dir, 16, RateMiBps);
        using var destination = Destination(dir, uri, 1);
        WaitListening(destination);
        int seenBefore = ReadText(source.Serial).Length;
        source.Control.Ok("migrate", $"\"uri\": \"{uri}\", \"bandwidth_bytes_per_s\": {8 << 20}");
        var first = source.WaitForMigration(s => s.GetProperty("dirty_rate_bytes_per_s").GetInt64() > 0 || s.GetProperty("phase").GetString() is MigrationPhases.Failed or MigrationPhases.Completed);
        string during = ReadText(source.Serial)[seenBefore..];
        Assert.Equal(VmmExitCode.Migrated, source.Process.WaitForExit(Timeout));
        log.WriteLine(first.ToString());
        log.WriteLine(during);
        log.WriteLine(source.Process.Stderr);

        // The guest's own rate: paced, so never much above the target; the dirty log's rate over round 0 agrees with it.
        var guestRates = Rates(during);
        Assert.NotEmpty(guestRates);
        Assert.All(guestRates, r => Assert.True(r.KiBps <= RateMiBps * 1024 * 11 / 10, $"the guest reports {r.KiBps} KiB/s against a target of {RateMiBps} MiB/s"));
        double guest = guestRates.Average(r => r.KiBps) * 1024;
        double logged = first.GetProperty("dirty_rate_bytes_per_s").GetInt64();
        Assert.True(guest > RateMiBps * (1 << 20) * 0.4, $"the guest reached only {guest / (1 << 20):F2} MiB/s of {RateMiBps}");
        Assert.True(Math.Abs(logged - guest) < guest * 0.35, $"KVM's dirty log counts {logged / (1 << 20):F2} MiB/s, the guest reports {guest / (1 << 20):F2} MiB/s");

        // On the destination: the vCPU went on in ring 3, the generations go on, and a full check of every page passes.
        string dst = dir.File("dst.log");
        Assert.True(WaitForFile(dst, t => Occurrences(t, "work: udirty verify ok pass") >= 1 && Rates(t).Count >= 2 || t.Contains("FAILED") || t.Contains("exception"), Timeout), ReadText(dst) + destination.Stderr);
        string after = ReadText(dst);
        Assert.DoesNotContain("FAILED", after);
        Assert.DoesNotContain("KvmPS built-in guest", after);
        var passes = Rates(ReadText(source.Serial)).Concat(Rates(after)).Select(r => r.Pass).ToList();
        for (int i = 1; i < passes.Count; i++) Assert.True(passes[i] >= passes[i - 1], $"generation {passes[i]} after {passes[i - 1]}");
        Assert.All(Rates(after), r => Assert.True(r.KiBps <= RateMiBps * 1024 * 11 / 10 && r.KiBps > 0, $"destination: {r.KiBps} KiB/s"));
        using var client = new ControlClient(dir.File("dst.sock"));
        client.Ok("stop", "\"graceful\": false");
    }

    [Fact]
    public void TheRingThreeDirtierRefusesAnAreaOrARateItCannotHave()
    {
        // 256 MiB of RAM: 300 MiB from 18 MiB does not fit; a rate beyond 1 TiB/s; a missing rate.
        var (_, stdout, stderr) = VmmProcess.Run(Timeout, "--memory", "256M", "--cmdline", "kvmps.run=work udirty 300 50,work udirty 16 2000000,work udirty 16,exit 0");
        Assert.Contains("work: udirty 300 MiB does not fit between 18 MiB and the end of usable RAM (255 MiB)", stdout + stderr);
        Assert.Contains("work: udirty rate 2000000 MiB/s is beyond reach", stdout);
        Assert.Contains("usage: work MiB | work verify | work dirty MiB | work udirty MiB RATE_MiB_per_s", stdout);
        Assert.DoesNotContain("exception", stdout);
    }
}
