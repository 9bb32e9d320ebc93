using System.Buffers.Binary;
using KvmPS.Devices.Virtio;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices;

public sealed class VirtQueueTests : IDisposable
{
    private readonly GuestMemory _mem = GuestMemory.Create(16UL << 20);
    public void Dispose() => _mem.Dispose();

    [Fact]
    public void PopsASimpleChainAndPublishesTheUsedElement()
    {
        var r = new TestRing(_mem, 8);
        var q = r.Create();
        r.SetDesc(0, 0x20000, 100, VirtQueue.DescFlagNext, 1);
        r.SetDesc(1, 0x30000, 200, VirtQueue.DescFlagWrite);
        r.Offer(0);
        var chain = new DescriptorChain();
        Assert.Equal(PopResult.Chain, q.Pop(chain));
        Assert.Equal(0, chain.Head);
        Assert.Equal([new VirtqBuffer(0x20000, 100, false), new VirtqBuffer(0x30000, 200, true)], chain.Buffers);
        Assert.Equal(100UL, chain.ReadableBytes);
        Assert.Equal(200UL, chain.WritableBytes);
        Assert.Equal(PopResult.Empty, q.Pop(new DescriptorChain()));

        Assert.Equal(5, chain.WriteTo(_mem, 0, "hello"u8));
        Assert.Equal((byte)'h', _mem.ReadByte(0x30000));
        q.PushUsed(chain.Head, 5);
        Assert.Equal(1, r.UsedIdx);
        Assert.Equal((0u, 5u), r.UsedElem(0));
        Assert.True(q.ShouldInterrupt());
        Assert.False(q.IsBroken);
    }

    [Fact]
    public void ReadFromCrossesBufferBoundaries()
    {
        var r = new TestRing(_mem, 4);
        var q = r.Create();
        _mem.Write(0x20000, "abc"u8);
        _mem.Write(0x21000, "defg"u8);
        r.SetDesc(2, 0x20000, 3, VirtQueue.DescFlagNext, 3);
        r.SetDesc(3, 0x21000, 4, 0);
        r.Offer(2);
        var chain = new DescriptorChain();
        Assert.Equal(PopResult.Chain, q.Pop(chain));
        var buf = new byte[5];
        Assert.Equal(5, chain.ReadFrom(_mem, 1, buf));
        Assert.Equal("bcdef"u8.ToArray(), buf);
    }

    [Fact]
    public void FollowsIndirectTablesWhenNegotiated()
    {
        var r = new TestRing(_mem, 4);
        ulong table = 0x40000;
        r.SetDesc(0, 0x50000, 16, VirtQueue.DescFlagNext, 1, table);
        r.SetDesc(1, 0x51000, 32, VirtQueue.DescFlagNext | VirtQueue.DescFlagWrite, 2, table);
        r.SetDesc(2, 0x52000, 64, VirtQueue.DescFlagWrite, 0, table);
        r.SetDesc(1, table, 3 * 16, VirtQueue.DescFlagIndirect);
        r.Offer(1);
        var q = r.Create(indirect: true);
        var chain = new DescriptorChain();
        Assert.Equal(PopResult.Chain, q.Pop(chain));
        Assert.Equal(1, chain.Head);
        Assert.Equal(3, chain.Buffers.Count);
        Assert.Equal(96UL, chain.WritableBytes);

        // The same ring without the feature negotiated is a driver error.
        var q2 = r.Create(indirect: false);
        Assert.Equal(PopResult.Error, q2.Pop(chain));
        Assert.Contains("INDIRECT_DESC", q2.Error);
    }

    [Fact]
    public void MixesDirectAndIndirectChainsInOneQueue()
    {
        var r = new TestRing(_mem, 8);
        var q = r.Create(indirect: true);
        ulong table = 0x60000;
        r.SetDesc(0, 0x70000, 8, VirtQueue.DescFlagWrite, 0, table);
        r.SetDesc(3, table, 16, VirtQueue.DescFlagIndirect);
        r.SetDesc(4, 0x71000, 8, VirtQueue.DescFlagWrite);
        r.Offer(3);
        r.Offer(4);
        var chain = new DescriptorChain();
        Assert.Equal(PopResult.Chain, q.Pop(chain));
        Assert.Equal(3, chain.Head);
        Assert.Equal(PopResult.Chain, q.Pop(chain));
        Assert.Equal(4, chain.Head);
        q.PushUsed(3, 8);
        q.PushUsed(4, 8);
        Assert.Equal(2, r.UsedIdx);
    }

    [Theory]
    [InlineData("loop")]
    [InlineData("next-out-of-range")]
    [InlineData("buffer-outside-ram")]
    [InlineData("buffer-straddles-ram-end")]
    [InlineData("readable-after-writable")]
    [InlineData("head-out-of-range")]
    [InlineData("avail-idx-too-far")]
    [InlineData("nested-indirect")]
    [InlineData("indirect-with-next")]
    [InlineData("indirect-bad-length")]
    [InlineData("too-long")]
    public void MalformedChainsBreakTheQueue(string kind)
    {
        var r = new TestRing(_mem, 4);
        var q = r.Create(indirect: true);
        ushort head = 0;
        switch (kind)
        {
            case "loop": r.SetDesc(0, 0x20000, 1, VirtQueue.DescFlagNext, 1); r.SetDesc(1, 0x20000, 1, VirtQueue.DescFlagNext, 0); break;
            case "next-out-of-range": r.SetDesc(0, 0x20000, 1, VirtQueue.DescFlagNext, 9); break;
            case "buffer-outside-ram": r.SetDesc(0, 0x7fff_0000_0000, 16, VirtQueue.DescFlagWrite); break;
            case "buffer-straddles-ram-end": r.SetDesc(0, (16UL << 20) - 8, 16, VirtQueue.DescFlagWrite); break;
            case "readable-after-writable": r.SetDesc(0, 0x20000, 1, VirtQueue.DescFlagNext | VirtQueue.DescFlagWrite, 1); r.SetDesc(1, 0x20000, 1, 0); break;
            case "head-out-of-range": head = 4; break;
            case "avail-idx-too-far": r.SetAvailIdx(5); break;
            case "nested-indirect": r.SetDesc(0, 0x40000, 16, VirtQueue.DescFlagIndirect); r.SetDesc(0, 0x41000, 16, VirtQueue.DescFlagIndirect, 0, 0x40000); break;
            case "indirect-with-next": r.SetDesc(0, 0x40000, 16, VirtQueue.DescFlagIndirect | VirtQueue.DescFlagNext, 1); break;
            case "indirect-bad-length": r.SetDesc(0, 0x40000, 17, VirtQueue.DescFlagIndirect); break;
            case "too-long": // each buffer is inside RAM, the total is over the 64 MiB limit
                for (ushort i = 0; i < 5; i++) r.SetDesc(i, 0x100000, 0xE00000, (ushort)(VirtQueue.DescFlagWrite | (i < 4 ? VirtQueue.DescFlagNext : 0)), (ushort)(i + 1), 0x40000);
                r.SetDesc(0, 0x40000, 5 * 16, VirtQueue.DescFlagIndirect);
                break;
        }
        if (kind != "avail-idx-too-far") r.Offer(head);
        var chain = new DescriptorChain();
        Assert.Equal(PopResult.Error, q.Pop(chain));
        Assert.True(q.IsBroken);
        Assert.NotNull(q.Error);
        Assert.Empty(chain.Buffers);
        Assert.Equal(PopResult.Error, q.Pop(chain)); // stays broken
        q.PushUsed(0, 0);
        Assert.Equal(0, r.UsedIdx); // a broken queue writes nothing
    }

    [Theory]
    [InlineData((ushort)3, 0x10000UL, 0x10100UL, 0x10200UL)]   // not a power of two
    [InlineData((ushort)4, 0x10008UL, 0x10100UL, 0x10200UL)]   // descriptor table misaligned
    [InlineData((ushort)4, 0x10000UL, 0x10101UL, 0x10200UL)]   // avail misaligned
    [InlineData((ushort)4, 0x10000UL, 0x10100UL, 0x10202UL)]   // used misaligned
    [InlineData((ushort)4, 0xFFFF_FFF0UL, 0x10100UL, 0x10200UL)] // outside RAM
    [InlineData((ushort)0, 0x10000UL, 0x10100UL, 0x10200UL)]
    public void RejectsBadQueueLayouts(ushort size, ulong desc, ulong avail, ulong used)
    {
        Assert.Null(VirtQueue.TryCreate(_mem, size, desc, avail, used, false, false, out var error));
        Assert.NotNull(error);
    }

    [Fact]
    public void EventIdxInterruptDecisions()
    {
        var r = new TestRing(_mem, 8);
        var q = r.Create(eventIdx: true);
        var chain = new DescriptorChain();
        for (ushort i = 0; i < 4; i++) { r.SetDesc(i, 0x20000, 4, VirtQueue.DescFlagWrite); r.Offer(i); }

        // Driver asks to be interrupted once used->idx passes 2 (used_event = 2: interrupt when idx moves past 2).
        r.SetUsedEvent(2);
        Assert.Equal(PopResult.Chain, q.Pop(chain));
        q.PushUsed(chain.Head, 4);
        Assert.True(q.ShouldInterrupt()); // first decision always interrupts
        Assert.Equal(PopResult.Chain, q.Pop(chain));
        q.PushUsed(chain.Head, 4);       // used idx 2
        Assert.False(q.ShouldInterrupt()); // event 2 not yet crossed (needs idx 3)
        Assert.Equal(PopResult.Chain, q.Pop(chain));
        q.PushUsed(chain.Head, 4);       // used idx 3
        Assert.True(q.ShouldInterrupt());
        Assert.Equal(PopResult.Chain, q.Pop(chain));
        q.PushUsed(chain.Head, 4);       // used idx 4, event still 2
        Assert.False(q.ShouldInterrupt());

        Assert.True(VirtQueue.NeedEvent(0xFFFF, 0, 0xFFFF));  // wrap-around
        Assert.False(VirtQueue.NeedEvent(5, 5, 3));
        Assert.True(VirtQueue.NeedEvent(4, 5, 3));
    }

    [Fact]
    public void EventIdxPublishesAvailEventAndDetectsLateBuffers()
    {
        var r = new TestRing(_mem, 8);
        var q = r.Create(eventIdx: true);
        var chain = new DescriptorChain();
        r.SetDesc(0, 0x20000, 4, VirtQueue.DescFlagWrite);
        r.Offer(0);
        Assert.Equal(PopResult.Chain, q.Pop(chain));
        Assert.False(q.EnableNotifications());
        Assert.Equal(1, r.AvailEvent); // notify me when you make index 1 available
        r.Offer(0);
        Assert.True(q.EnableNotifications()); // a buffer arrived: keep processing
    }

    [Fact]
    public void WithoutEventIdxHonoursNoInterruptAndNoNotify()
    {
        var r = new TestRing(_mem, 8);
        var q = r.Create();
        r.SetDesc(0, 0x20000, 4, VirtQueue.DescFlagWrite);
        r.Offer(0);
        var chain = new DescriptorChain();
        q.DisableNotifications();
        Assert.Equal(VirtQueue.UsedFlagNoNotify, _mem.ReadUInt16(r.Used));
        Assert.Equal(PopResult.Chain, q.Pop(chain));
        Assert.False(q.EnableNotifications());
        Assert.Equal(0, _mem.ReadUInt16(r.Used));
        q.PushUsed(0, 4);
        r.SetAvailFlags(VirtQueue.AvailFlagNoInterrupt);
        Assert.False(q.ShouldInterrupt());
        r.SetAvailFlags(0);
        Assert.True(q.ShouldInterrupt());
    }

    [Fact]
    public void RingsSpanningTheEndOfRamAreRejected()
    {
        ulong end = 16UL << 20;
        Assert.Null(VirtQueue.TryCreate(_mem, 256, end - 16 * 128, 0x10000, 0x20000, false, false, out var e));
        Assert.Contains("descriptor table", e);
        Assert.Null(VirtQueue.TryCreate(_mem, 256, 0x10000, 0x30000, end - 8, false, false, out e));
        Assert.Contains("used ring", e);
    }
}
