using System.Diagnostics;
using System.Text;

namespace KvmPS.Diagnostics;

/// <summary>
/// With <c>KVMPS_STARTUP_TRACE=1</c>, kvmps-vmm prints how long each start-up stage took (milliseconds since its Main
/// began) once the vCPUs run: the figure the restore benchmark (8c) is about, broken down. Off, a mark costs one branch.
/// </summary>
public static class StartupTimeline
{
    private static readonly bool Enabled = Environment.GetEnvironmentVariable("KVMPS_STARTUP_TRACE") == "1";
    private static readonly Stopwatch Clock = Stopwatch.StartNew();
    // CLOCK_MONOTONIC when the clock started (Stopwatch's timestamp on Linux): lets a caller that noted the same clock
    // before exec work out the time spent before Main (process creation, runtime start).
    private static readonly long ClockStartNs = (long)(Stopwatch.GetTimestamp() * (1e9 / Stopwatch.Frequency)) - Clock.Elapsed.Ticks * 100;
    private static readonly List<(string Stage, double Ms)> Marks = [];

    public static void Mark(string stage)
    {
        if (!Enabled) return;
        lock (Marks) Marks.Add((stage, Clock.Elapsed.TotalMilliseconds));
    }

    /// <summary>Writes the marks so far, one line, and forgets them.</summary>
    public static void Report(TextWriter log)
    {
        if (!Enabled) return;
        var line = new StringBuilder("kvmps-vmm: start-up");
        lock (Marks)
        {
            foreach (var (stage, ms) in Marks) line.Append($" {stage} {ms:0.00}");
            Marks.Clear();
        }
        // Bytes the managed heap handed out so far: each fresh page of them is a page fault during start-up.
        log.WriteLine(line.Append($" ms (main at monotonic {ClockStartNs} ns; {GC.GetTotalAllocatedBytes() / 1024} KiB allocated)").ToString());
    }
}
