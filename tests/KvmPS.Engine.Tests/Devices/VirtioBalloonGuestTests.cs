using System.Runtime.InteropServices;
using System.Text.Json;
using KvmPS.Devices;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Balloon;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vm;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>
/// The built-in guest's balloon driver against the real engine: guest memory that the guest touched is resident in
/// this (the VMM's) process; inflating the balloon gives it back (MADV_DONTNEED), deflating and touching again brings
/// it back. RSS is measured with mincore over the guest RAM mapping.
/// </summary>
public class VirtioBalloonGuestTests(ITestOutputHelper log)
{
    private const long MiB = 1 << 20;

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int mincore(nint addr, nuint length, byte* vec);

    private static unsafe long ResidentBytes(GuestMemory memory)
    {
        long pages = 0;
        foreach (var r in memory.Regions)
        {
            var vec = new byte[r.SizeBytes / 4096];
            fixed (byte* v = vec) Assert.Equal(0, mincore(r.HostAddress, (nuint)r.SizeBytes, v));
            pages += vec.Count(b => (b & 1) != 0);
        }
        return pages * 4096;
    }

    private sealed class Session(GuestRun run, ITestOutputHelper log)
    {
        private int _seen;

        /// <summary>Types a command and waits for <paramref name="expect"/> in the output that follows it.</summary>
        public string Command(string command, string expect, int timeoutSeconds = 60)
        {
            int from = run.Output.Length;
            run.Type(command + "\r");
            var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
            while (DateTime.UtcNow < deadline)
            {
                string all = run.Output;
                int at = all.IndexOf(expect, from, StringComparison.Ordinal);
                if (at >= 0)
                {
                    int lineEnd = all.IndexOf('\n', at);
                    if (lineEnd >= 0)
                    {
                        _seen = lineEnd;
                        return all[from..(lineEnd + 1)];
                    }
                }
                if (run.Machine.Exited.IsCompleted) break;
                Thread.Sleep(10);
            }
            log.WriteLine(run.Output);
            throw new TimeoutException($"no '{expect}' after '{command}' (seen up to {_seen})");
        }
    }

    [Fact]
    public void InflateGivesMemoryBackAndDeflateLetsTheGuestUseItAgain()
    {
        var deviceLog = new List<string>();
        using var run = new GuestRun(new MachineConfig
        {
            MemoryBytes = 256UL << 20,
            Devices = [new BalloonDeviceConfig()],
            DeviceLog = m => { lock (deviceLog) deviceLog.Add(m); },
        });
        var balloon = Assert.Single(run.Machine.Devices.OfType<VirtioBalloon>());
        run.Machine.Start();
        try
        {
            Assert.True(run.WaitForOutput("ready", TimeSpan.FromSeconds(60)), run.Output);
            var s = new Session(run, log);
            var mem = run.Machine.Memory;

            long boot = ResidentBytes(mem);
            s.Command("mem touch 64", "mem: touched 65536 KiB");
            long touched = ResidentBytes(mem);

            balloon.SetTarget(64UL << 20);
            string inflate = s.Command("balloon", "balloon: actual");
            Assert.Contains("balloon: actual 16384", inflate);
            long inflated = ResidentBytes(mem);
            Assert.Equal(16384u, balloon.ActualPages);
            Assert.Equal(16384, balloon.InflatedPages);
            Assert.Equal(64 * MiB, balloon.DiscardedBytes);

            balloon.SetTarget(0);
            string deflate = s.Command("balloon", "balloon: actual");
            Assert.Contains("balloon: actual 0", deflate);
            long deflated = ResidentBytes(mem);
            s.Command("mem touch 64", "mem: touched 65536 KiB");
            long retouched = ResidentBytes(mem);

            log.WriteLine($"guest RSS: boot {boot / MiB} MiB, after touch {touched / MiB} MiB, inflated {inflated / MiB} MiB, " +
                          $"deflated {deflated / MiB} MiB, touched again {retouched / MiB} MiB");
            Assert.True(touched - boot >= 60 * MiB, $"touching 64 MiB raised RSS by only {(touched - boot) / MiB} MiB");
            Assert.True(touched - inflated >= 56 * MiB, $"inflating 64 MiB lowered RSS by only {(touched - inflated) / MiB} MiB");
            Assert.True(deflated - inflated < 8 * MiB, "deflating alone should not fault the pages back in");
            Assert.True(retouched - deflated >= 56 * MiB, $"touching again raised RSS by only {(retouched - deflated) / MiB} MiB");
            Assert.Equal(16384, balloon.DeflatedPages);
            Assert.Equal(0, balloon.InvalidPfns);
            lock (deviceLog) Assert.DoesNotContain(deviceLog, l => l.Contains("needs reset"));
        }
        finally
        {
            log.WriteLine(run.Output);
            run.Machine.Stop("test done");
        }
    }

    [Fact]
    public void StatsAndControlRequests()
    {
        using var run = new GuestRun(new MachineConfig
        {
            MemoryBytes = 128UL << 20,
            Devices = [new BalloonDeviceConfig { DeflateOnOom = true }],
            Cmdline = "kvmps.run=balloon stats,balloon,exit 0",
        });
        var balloon = Assert.Single(run.Machine.Devices.OfType<VirtioBalloon>());
        // A target set before the driver loads is what the driver finds.
        Control(balloon, "balloon.set", """{"target_bytes": 8388608}""");
        var exit = run.RunToExit(TimeSpan.FromSeconds(60));
        log.WriteLine(run.Output);
        Assert.Equal(VmExitKind.DebugExit, exit.Kind);
        Assert.Contains("balloon: stats sent", run.Output);
        Assert.Contains("balloon: actual 2048", run.Output);

        using var doc = JsonDocument.Parse(Control(balloon, "balloon.get", "{}"));
        var r = doc.RootElement;
        log.WriteLine(r.ToString());
        Assert.Equal(8L << 20, r.GetProperty("target_bytes").GetInt64());
        Assert.Equal(8L << 20, r.GetProperty("actual_bytes").GetInt64());
        Assert.True(r.GetProperty("deflate_on_oom").GetBoolean());
        var stats = r.GetProperty("stats");
        long total = stats.GetProperty("total_memory").GetInt64();
        Assert.InRange(total, 100 * MiB, 128 * MiB);
        Assert.InRange(stats.GetProperty("free_memory").GetInt64(), 48 * MiB, total); // the allocator's pages: 64 MiB up, less the balloon's 8
        Assert.Equal(0, stats.GetProperty("swap_in").GetInt64());
        Assert.True(r.GetProperty("stats_updated_ms_ago").GetInt64() >= 0);

        Assert.Throws<ArgumentException>(() => Control(balloon, "balloon.set", """{"target_bytes": 268435456}"""));
        Assert.Contains("negative", Assert.Throws<ArgumentException>(() => Control(balloon, "balloon.set", """{"target_bytes": -1}""")).Message);
        // Unknown and missing fields are refused by the request record, by name, before the device sees them.
        var unknown = Assert.Throws<KvmPS.Contract.ControlProtocolException>(() => Control(balloon, "balloon.set", """{"target_bytes": 1, "size": 1}"""));
        Assert.Equal(KvmPS.Contract.ControlErrorCodes.InvalidArgument, unknown.Code);
        Assert.Contains("size", unknown.Message);
        Assert.Throws<KvmPS.Contract.ControlProtocolException>(() => Control(balloon, "balloon.set", """{"size": 1}"""));
    }

    /// <summary>The request as the control socket takes it: read into its contract record, then handed to the device.</summary>
    internal static string Control(IDeviceControl device, string request, string arguments)
    {
        using var doc = JsonDocument.Parse("{\"request\": \"" + request + "\"" + (arguments.Trim() is "{}" ? "" : ", " + arguments.Trim()[1..^1]) + "}");
        var record = KvmPS.Contract.ControlRequests.Parse(doc.RootElement);
        return device.HandleControlRequest(record).GetRawText();
    }
}
