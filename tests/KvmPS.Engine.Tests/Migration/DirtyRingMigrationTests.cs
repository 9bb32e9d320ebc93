using System.Text.RegularExpressions;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Migration;

/// <summary>
/// Migration with KVM's dirty ring (<c>--dirty-ring-entries</c>, docs/vmm.md) instead of the dirty bitmap: the guest
/// rewrites 8 MiB per pass while pre-copy runs; the destination's rolling check of every page finds each one with the
/// last data the guest wrote, so no page the vCPU dirtied was missed. KVM refuses the bitmap once a ring is on, so the
/// rounds can only have come from the rings. The ring is the largest KVM allows: on this nested PVM host a 1024-entry
/// ring loses entries (the host kernel warns in kvm_dirty_ring_push: its emulation of guest kernel code does not stop
/// for a full ring), and this test caught exactly that (docs/vmm.md says so).
/// </summary>
[Collection("vmm-process")]
public sealed partial class DirtyRingMigrationTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    [GeneratedRegex(@"^work: dirty pass (\d+)\r?$", RegexOptions.Multiline)]
    private static partial Regex DirtyPassLine();

    private static List<long> DirtyPasses(string text) => DirtyPassLine().Matches(text).Select(m => long.Parse(m.Groups[1].Value)).ToList();

    [Fact]
    public void ADirtyingGuestMovesWithItsPagesTrackedByTheDirtyRing()
    {
        using var dir = new TempDir();
        string serial = dir.File("src.log"), destinationLog = dir.File("dst.log"), uri = "unix:" + dir.File("in.sock");
        using var source = new VmmProcess("--memory", "256M", "--dirty-ring-entries", "65536", "--cmdline", "kvmps.run=work dirty 8",
            "--serial", "file:" + serial, "--control-socket", dir.File("src.sock"));
        Assert.True(WaitForFile(serial, t => DirtyPasses(t).Count >= 2, Timeout), ReadText(serial) + source.Stderr);
        Assert.Contains("dirty ring: 65536 entries per vCPU", source.Stderr);
        using var destination = new VmmProcess("--incoming", uri, "--memory", "256M", "--cmdline", "kvmps.run=work 1",
            "--serial", "file:" + destinationLog, "--control-socket", dir.File("dst.sock"));
        Assert.True(destination.WaitForStderr("waiting for a migration stream", Timeout), destination.Stderr);

        using (var control = new ControlClient(dir.File("src.sock")))
            control.Ok("migrate", $"\"uri\": \"{uri}\", \"downtime_ms\": 1000");
        Assert.Equal(VmmExitCode.Migrated, source.WaitForExit(Timeout));
        log.WriteLine(source.Stderr + destination.Stderr);
        var before = DirtyPasses(ReadText(serial));
        Assert.True(WaitForFile(destinationLog, t => DirtyPasses(t).Count >= 3 || t.Contains("FAILED"), Timeout), ReadText(destinationLog) + destination.Stderr);
        string after = ReadText(destinationLog);
        Assert.DoesNotContain("FAILED", after);
        var passes = before.Concat(DirtyPasses(after)).ToList();
        for (int i = 0; i < passes.Count; i++) Assert.Equal(i + 1, passes[i]); // the generations go on: 1, 2, 3, ...
        using (var control = new ControlClient(dir.File("dst.sock")))
            control.Ok("stop", "\"graceful\": false");
        destination.WaitForExit(Timeout);
    }

    [Fact]
    public void ARingSizeKvmCannotTakeIsRefusedNamingTheSetting()
    {
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--dirty-ring-entries", "1000", "--cmdline", "kvmps.run=exit 0");
        Assert.Equal(VmmExitCode.UsageError, code);
        Assert.Contains("--dirty-ring-entries", stderr);
        Assert.Contains("power of two", stderr);
    }
}
