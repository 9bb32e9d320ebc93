using KvmPS.Devices.Virtio;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices.State;

public sealed class VirtQueueStateTests : IDisposable
{
    private readonly GuestMemory _mem = GuestMemory.Create(16UL << 20);
    public void Dispose() => _mem.Dispose();

    [Fact]
    public void RestoredQueuePopsTheNextChainAndKeepsEventIdxState()
    {
        var ring = new TestRing(_mem, 8);
        var q = ring.Create(eventIdx: true);
        for (int i = 0; i < 3; i++) { ring.SetDesc(i, 0x40000 + 0x100UL * (uint)i, 16, VirtQueue.DescFlagWrite); ring.Offer((ushort)i); }
        var chain = new DescriptorChain();
        for (int i = 0; i < 2; i++) { Assert.Equal(PopResult.Chain, q.Pop(chain)); q.PushUsed(chain.Head, 16); }
        Assert.True(q.ShouldInterrupt());

        var state = q.CaptureState();
        var w = new StateWriter();
        state.Write(w);
        var read = VirtQueueState.Read(new StateReader(w.ToArray(), "queue"));
        Assert.Equal(state, read);
        var r = VirtQueue.TryRestore(_mem, read, out var error);
        Assert.Null(error);
        Assert.Equal((ushort)2, r!.LastAvailIndex);
        Assert.Equal((ushort)2, r.UsedIndex);
        Assert.Equal(1, r.Pending);
        Assert.Equal(PopResult.Chain, r.Pop(chain));
        Assert.Equal(2, chain.Head);               // the third chain, not the first again
        r.PushUsed(chain.Head, 16);
        Assert.Equal(3, ring.UsedIdx);
        Assert.Equal((2u, 16u), ring.UsedElem(2));
        ring.SetUsedEvent(5);
        Assert.False(r.ShouldInterrupt());         // EVENT_IDX state came along: used_event 5 not crossed by 2→3
        Assert.Equal(q.CaptureState() with { NextAvailIndex = 3, NextUsedIndex = 3, SignalledUsedIndex = 3 }, r.CaptureState());
    }

    [Fact]
    public void RestoreRefusesALayoutOutsideGuestMemory()
    {
        var state = new TestRing(_mem, 8).Create().CaptureState() with { UsedRing = 32UL << 20 };
        Assert.Null(VirtQueue.TryRestore(_mem, state, out var error));
        Assert.Contains("outside guest RAM", error);
    }
}
