using KvmPS.Devices.Virtio;
using KvmPS.Interop;

namespace KvmPS.Engine.Tests.Devices.State;

public sealed class IoEventLoopPauseTests
{
    [Fact]
    public void PauseWaitsForTheCallbackInProgressAndDefersTheNextOnes()
    {
        using var loop = new IoEventLoop(_ => { }, "kvmps-io-test");
        using var fd = EventFdHandle.Create();
        using var entered = new ManualResetEventSlim();
        int started = 0, finished = 0;
        using var reg = loop.Register(fd, () =>
        {
            Interlocked.Increment(ref started);
            entered.Set();
            Thread.Sleep(200);  // a block request being served
            Interlocked.Increment(ref finished);
        });
        fd.Signal();
        Assert.True(entered.Wait(TimeSpan.FromSeconds(5)));
        loop.Pause();
        Assert.Equal(1, Volatile.Read(ref finished)); // Pause returned only after the callback finished
        Assert.False(loop.InCallback);
        fd.Signal();
        Thread.Sleep(150);
        Assert.Equal(1, Volatile.Read(ref started));  // paused: not dispatched
        loop.Resume();
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref finished) == 2, TimeSpan.FromSeconds(5)));
    }
}
