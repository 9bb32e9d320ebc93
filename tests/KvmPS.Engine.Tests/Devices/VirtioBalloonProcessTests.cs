using System.Text;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>The balloon through a kvmps-vmm process: --device balloon, balloon.set/balloon.get on the control socket, metrics RSS.</summary>
public class VirtioBalloonProcessTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private const long MiB = 1 << 20;

    [Fact]
    public void ControlSocketDrivesTheBalloon()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--memory", "256M", "--device", "balloon,stats_interval_s=1", "--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        try
        {
            client.WaitForState("Running", Timeout); // device requests are listed once the VM exists
            var describe = client.Ok("describe");
            var requests = describe.GetProperty("requests").EnumerateArray().Select(e => e.GetString()).ToArray();
            Assert.Contains("balloon.set", requests);
            Assert.Contains("balloon.get", requests);
            var device = Assert.Single(describe.GetProperty("devices").EnumerateArray());
            Assert.Equal("balloon", device.GetProperty("type").GetString());
            Assert.Equal(1, device.GetProperty("stats_interval_s").GetInt32());

            using var console = new ControlClient(sock);
            Assert.True(console.Ok("console.attach").GetProperty("attached").GetBoolean());
            Assert.Contains("ready", console.ReadConsoleUntil("ready", Timeout));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            string Type(string command, string until)
            {
                log.WriteLine($"{clock.ElapsedMilliseconds} ms: {command}");
                console.Stream.Write(Encoding.ASCII.GetBytes(command + "\r"));
                string got = console.ReadConsoleUntil(until, Timeout);
                Assert.Contains(until, got);
                return got;
            }
            long GuestRss() => client.Ok("metrics").GetProperty("guest_rss_bytes").GetInt64();

            Type("mem touch 64", "mem: touched 65536 KiB");
            long touched = GuestRss();
            var set = client.Ok("balloon.set", "\"target_bytes\": 67108864");
            Assert.Equal(64 * MiB, set.GetProperty("target_bytes").GetInt64());
            Type("balloon", "balloon: actual 16384");
            long inflated = GuestRss();
            Type("balloon stats", "balloon: stats sent");

            // The guest has queued its stats; the VMM's I/O thread takes them from the queue on its own time.
            var get = client.Ok("balloon.get");
            for (var until = DateTime.UtcNow.AddSeconds(10); !get.GetProperty("stats").EnumerateObject().Any() && DateTime.UtcNow < until; Thread.Sleep(50))
                get = client.Ok("balloon.get");
            log.WriteLine(get.ToString());
            Assert.Equal(64 * MiB, get.GetProperty("actual_bytes").GetInt64());
            Assert.True(get.GetProperty("stats").GetProperty("total_memory").GetInt64() > 200 * MiB);
            log.WriteLine($"guest RSS through metrics: touched {touched / MiB} MiB, inflated {inflated / MiB} MiB");
            Assert.True(touched - inflated >= 56 * MiB, $"RSS fell by only {(touched - inflated) / MiB} MiB");

            // With stats_interval_s=1 the device hands the stats buffer back; the driver can then send a new one.
            Thread.Sleep(1500);
            Type("balloon stats", "balloon: stats sent");

            var bad = client.Request("balloon.set", "\"target_bytes\": 1099511627776");
            Assert.False(bad.GetProperty("ok").GetBoolean());
            Assert.Equal("InvalidArgument", bad.GetProperty("error").GetProperty("code").GetString());
        }
        finally
        {
            log.WriteLine(vmm.Stderr);
        }
        var stopClock = System.Diagnostics.Stopwatch.StartNew();
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
        log.WriteLine($"stop took {stopClock.ElapsedMilliseconds} ms");
    }
}
