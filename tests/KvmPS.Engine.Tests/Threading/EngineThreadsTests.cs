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
