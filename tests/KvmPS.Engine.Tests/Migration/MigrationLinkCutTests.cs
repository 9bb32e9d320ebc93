using System.Text.Json;
using System.Text.RegularExpressions;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Devices;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Migration;

/// <summary>
/// Issue 12: the link between two hosts breaks mid-way. Source and destination VMMs run in two network namespaces
/// joined by a veth pair; while the migration's pre-copy streams over it (capped, so it is mid-way for a while), the
/// veth is deleted. Nothing is lost: the source gives up when the connection makes no progress and its guest runs on,
/// never paused for a hand-over; the destination gives up on the silent stream, exits with status 16 and leaves no
/// control socket behind.
/// </summary>
[Collection("vmm-process")]
public sealed partial class MigrationLinkCutTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    [GeneratedRegex(@"^work: dirty pass (\d+)\r?$", RegexOptions.Multiline)]
    private static partial Regex DirtyPassLine();

    private static int DirtyPasses(string text) => DirtyPassLine().Matches(text).Count;

    [NetNsFact]
    public void CuttingTheLinkMidWayLeavesTheVmRunningOnTheSourceAndTheDestinationClean()
    {
        using var a = new NetNs();
        using var b = new NetNs();
        var (linkA, _) = a.JoinByVeth(b, "10.97.1.1/24", "10.97.1.2/24");

        using var dir = new TempDir();
        string serial = dir.File("src.log"), sourceSocket = dir.File("src.sock"), destinationSocket = dir.File("dst.sock");
        using var source = new VmmProcess(["--memory", "256M", "--cmdline", "kvmps.run=work dirty 4", "--serial", "file:" + serial,
            "--control-socket", sourceSocket], redirectStdin: false, netns: a.Name);
        Assert.True(WaitForFile(serial, t => DirtyPasses(t) >= 2, Timeout), ReadText(serial) + source.Stderr);
        string uri = $"tcp:10.97.1.2:{47000 + Random.Shared.Next(2000)}";
        using var destination = new VmmProcess(["--incoming", uri, "--memory", "256M", "--cmdline", "kvmps.run=work 1",
            "--serial", "file:" + dir.File("dst.log"), "--control-socket", destinationSocket], redirectStdin: false, netns: b.Name);
        Assert.True(destination.WaitForStderr("waiting for a migration stream", Timeout), destination.Stderr);

        using var control = new ControlClient(sourceSocket);
        // 128 KiB/s: the guest's 4 MiB alone take half a minute, so the stream is surely mid-way when the link goes.
        control.Ok("migrate", $"\"uri\": \"{uri}\", \"bandwidth_bytes_per_s\": 131072");
        JsonElement status;
        var deadline = DateTime.UtcNow + Timeout;
        while ((status = control.Ok("migrate.status")).GetProperty("bytes_sent").GetInt64() < 256 * 1024)
        {
            Assert.True(status.GetProperty("phase").GetString() is MigrationPhases.Setup or MigrationPhases.PreCopy, $"{status}\n{source.Stderr}\n{destination.Stderr}");
            Assert.True(DateTime.UtcNow < deadline, $"the stream did not get going: {status}");
            Thread.Sleep(50);
        }
        log.WriteLine($"cutting the link at {status}");
        a.Ip("link", "del", linkA); // both ends of the veth go
        // The socket buffer drains at the capped rate, then a send makes no progress for 30 s: measured 77 s here.
        deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);

        while ((status = control.Ok("migrate.status")).GetProperty("phase").GetString() is not (MigrationPhases.Failed or MigrationPhases.Completed or MigrationPhases.Cancelled))
        {
            Assert.True(DateTime.UtcNow < deadline, $"the source did not notice the cut: {status}");
            Thread.Sleep(200);
        }
        log.WriteLine($"source: {status}\n{source.Stderr}");
        Assert.Equal(MigrationPhases.Failed, status.GetProperty("phase").GetString());
        Assert.False(status.TryGetProperty("downtime_ms", out _), "never paused for a hand-over");
        // The VMM logs it before the phase turns Failed; the test reads its stderr asynchronously.
        Assert.True(source.WaitForStderr("the VM runs on here", TimeSpan.FromSeconds(10)), source.Stderr);
        Assert.Equal("Running", control.Ok("status").GetProperty("state").GetString());
        int passes = DirtyPasses(ReadText(serial));
        Assert.True(WaitForFile(serial, t => DirtyPasses(t) >= passes + 2, Timeout), "the guest goes on at the source");
        Assert.DoesNotContain("FAILED", ReadText(serial));

        Assert.Equal(VmmExitCode.IncomingFailed, destination.WaitForExit(Timeout));
        log.WriteLine($"destination: {destination.Stderr}");
        Assert.False(File.Exists(destinationSocket), "the destination left its control socket");
        control.Ok("stop", "\"graceful\": false");
        source.WaitForExit(Timeout);
    }
}
