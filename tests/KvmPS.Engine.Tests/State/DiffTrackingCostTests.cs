using System.Diagnostics;
using KvmPS.Engine.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.State;

/// <summary>
/// What KVM's dirty log costs the guest (docs/snapshots.md, "Dirty tracking"): the built-in guest fills 32 MiB it has
/// filled before (pages already mapped), once in a VMM that never took a snapshot (no dirty log) and once after a
/// full snapshot turned the log on (every page write-protected, so each first write faults into KVM).
/// </summary>
[Collection("vmm-process")]
public class DiffTrackingCostTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private const int FillMiB = 32;

    private static string ReadText(string path) => File.Exists(path) ? File.ReadAllText(path) : "";

    private static bool WaitForCount(string path, string text, int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (Occurrences(ReadText(path), text) >= count) return true;
            Thread.Sleep(2);
        }
        return false;
    }

    private static int Occurrences(string text, string what) => (text.Length - text.Replace(what, "").Length) / what.Length;

    /// <summary>Milliseconds the second fill of <see cref="FillMiB"/> MiB took, seen from the host.</summary>
    private double SecondFillMs(TempDir dir, bool snapshotFirst, int run)
    {
        string name = (snapshotFirst ? "logged" : "plain") + run;
        string serial = dir.File($"{name}.log"), sock = dir.File($"{name}.sock");
        // The first fill runs from the command line: its loop reads 'q' from the UART itself (a loop started from the
        // shell would not see it, the shell's interrupt handler takes the input).
        using var vmm = new VmmProcess("--memory", "256M", "--cmdline", $"kvmps.run=work {FillMiB}", "--serial", "file:" + serial, "--control-socket", sock);
        using var client = new ControlClient(sock);
        using var console = new ControlClient(sock);
        string filled = $"work: filled {FillMiB} MiB";
        Assert.True(WaitForCount(serial, filled, 1, Timeout), ReadText(serial) + vmm.Stderr);
        console.Ok("console.attach", "\"replay\": false");
        console.Stream.Write("q"u8);
        Assert.True(WaitForCount(serial, "work: stopped", 1, Timeout), ReadText(serial));
        if (snapshotFirst) client.Ok("snapshot.create", $"\"path\": \"{dir.File(name + "-snap")}\"");
        var clock = Stopwatch.StartNew();
        console.Stream.Write(System.Text.Encoding.ASCII.GetBytes($"work {FillMiB}\r"));
        Assert.True(WaitForCount(serial, filled, 2, Timeout), ReadText(serial));
        double ms = clock.Elapsed.TotalMilliseconds;
        if (snapshotFirst)
        {
            // The log saw every page of the fill (vCPU writes only): a diff now holds all of it.
            var diff = client.Ok("snapshot.create", $"\"path\": \"{dir.File(name + "-diff")}\", \"memory\": \"diff\"");
            Assert.True(diff.GetProperty("memory_bytes").GetInt64() >= (long)FillMiB << 20, diff.ToString());
        }
        return ms;
    }

    [Fact]
    public void MeasuresWhatTheDirtyLogCostsAGuestThatRewritesItsMemory()
    {
        using var dir = new TempDir();
        var plain = new List<double>();
        var logged = new List<double>();
        for (int i = 0; i < 2; i++)
        {
            plain.Add(SecondFillMs(dir, snapshotFirst: false, i));
            logged.Add(SecondFillMs(dir, snapshotFirst: true, i));
        }
        log.WriteLine($"re-fill of {FillMiB} MiB without the dirty log: {string.Join(", ", plain.Select(m => m.ToString("0")))} ms; " +
                      $"with it: {string.Join(", ", logged.Select(m => m.ToString("0")))} ms");
    }
}
