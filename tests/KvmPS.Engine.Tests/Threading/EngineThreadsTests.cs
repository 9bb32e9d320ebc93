using KvmPS.Interop;
using KvmPS.Threading;
using Xunit;

namespace KvmPS.Engine.Tests.Threading;

/// <summary>Threads started without waiting for them (<see cref="EngineThreads.Launch"/>): named, joinable, and steered off the caller's CPU only for their start.</summary>
public class EngineThreadsTests
{
    [Fact]
    public void ALaunchedThreadRunsItsBodyUnderItsNameAndCanBeJoined()
    {
        string? comm = null;
        using var release = new ManualResetEventSlim();
        var thread = EngineThreads.Launch(ThreadRole.DeviceWorker, "launch-test", () =>
        {
            comm = File.ReadAllText($"/proc/thread-self/comm").Trim();
            release.Wait();
        });
        Assert.False(thread.Join(TimeSpan.FromMilliseconds(50)), "joined before its body returned");
        release.Set();
        Assert.True(thread.Join(TimeSpan.FromSeconds(10)));
        Assert.Equal("launch-test", comm);
        Assert.Equal("launch-test", thread.Name);
    }

    [Fact]
    public void AStartAwayFromTheCallersCpuMayUseEveryOtherCpuItMay()
    {
        var cpus = new byte[Libc.CpuSetBytes];
        cpus[0] = 0b1011; // CPUs 0, 1 and 3
        Assert.Equal(0b1010, EngineThread.CpusOtherThan(cpus, 0)![0]);
        Assert.Equal(0b0011, EngineThread.CpusOtherThan(cpus, 3)![0]);
        Assert.Equal(cpus, EngineThread.CpusOtherThan(cpus, 2)); // not one of its CPUs: all of them
        cpus[0] = 0b0100;
        Assert.Null(EngineThread.CpusOtherThan(cpus, 2)); // its only CPU: no hint
        Assert.Null(EngineThread.CpusOtherThan(cpus, -1)); // sched_getcpu failed
    }

    [Fact]
    public unsafe void ALaunchOnAnotherCpuAsksForEveryCpuButTheCallers()
    {
        var allowed = new byte[Libc.CpuSetBytes];
        fixed (byte* mask = allowed) Assert.Equal(0, Libc.SchedGetAffinity(0, (nuint)allowed.Length, mask));
        if (allowed.Sum(b => System.Numerics.BitOperations.PopCount(b)) < 2) return; // one CPU: no hint to give
        byte* attr = stackalloc byte[Libc.PthreadAttrBytes];
        var asked = new byte[Libc.CpuSetBytes];
        for (int attempt = 0; ; attempt++)
        {
            Assert.Equal(0, Libc.PthreadAttrInit(attr));
            var thread = new EngineThread(ThreadRole.DeviceWorker, "unstarted", () => { });
            int before = Libc.SchedGetCpu();
            thread.StartAwayFromThisCpu(attr);
            int after = Libc.SchedGetCpu();
            fixed (byte* mask = asked) Assert.Equal(0, Libc.PthreadAttrGetAffinity(attr, (nuint)asked.Length, mask));
            Libc.PthreadAttrDestroy(attr);
            if (before != after && attempt < 10) continue; // moved meanwhile: which CPU it read is unknown
            Assert.True(thread.StartsAway);
            Assert.Equal(EngineThread.CpusOtherThan(allowed, before), asked);
            return;
        }
    }

    [Fact]
    public unsafe void ALaunchOnAnotherCpuGivesTheThreadBackEveryCpu()
    {
        var allowed = new byte[Libc.CpuSetBytes];
        fixed (byte* mask = allowed) Assert.Equal(0, Libc.SchedGetAffinity(0, (nuint)allowed.Length, mask));
        var later = new byte[Libc.CpuSetBytes];
        var thread = EngineThreads.Launch(ThreadRole.DeviceWorker, "launch-away", () =>
        {
            fixed (byte* mask = later) Libc.SchedGetAffinity(0, (nuint)later.Length, mask);
        }, onAnotherCpu: true);
        Assert.True(thread.Join(TimeSpan.FromSeconds(10)));
        Assert.Equal(allowed, later); // a start hint, not a pinning
    }
}
