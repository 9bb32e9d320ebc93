using System.Buffers.Binary;
using KvmPS.Interop;

namespace KvmPS.Engine.Tests.Devices.VfioUser;

/// <summary>The test device's INTx (--intx): VFIO semantics, level-triggered and automasked, unmasked by an eventfd.</summary>
public class VfioUserTestDeviceIntxTests
{
    private const uint Bar0 = 0, Config = 7, IrqIndexIntx = 0, IrqIndexMsix = 2;
    private const uint RegDoorbell = 0x1c, RegIrqCount = 0x38, RegIrqAck = 0x48;
    private const uint SetDataNone = 1, SetDataEventFd = 4, SetActionUnmask = 16, SetActionTrigger = 32;

    private static VfioUserReply IrqInfo(VfioUserTestClient c, uint index)
    {
        var p = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(p, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(8), index);
        return c.Call(VfioUserTestClient.DEVICE_GET_IRQ_INFO, p);
    }

    /// <summary>Two round trips: the server looks at the unmask eventfd after each message, so after the second reply it has.</summary>
    private static void Settle(VfioUserTestClient c)
    {
        c.Read32(Bar0, RegIrqCount);
        c.Read32(Bar0, RegIrqCount);
    }

    [Fact]
    public void WithoutTheOptionThereIsNoPinAndNoIntx()
    {
        using var server = new VfioUserTestServer();
        using var c = server.Connect();
        Assert.False(c.Version().IsError);
        Assert.Equal(0, c.Read(Config, 0x3d, 1)[0]);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(IrqInfo(c, IrqIndexIntx).Payload.AsSpan(12)));
        using var fd = EventFdHandle.Create();
        Assert.True(c.SetIrqs(SetDataEventFd | SetActionTrigger, IrqIndexIntx, 0, 1, [], fd).IsError);
    }

    [Fact]
    public void IntxIsLevelTriggeredAutomaskedAndUnmaskedByItsEventfd()
    {
        using var server = new VfioUserTestServer("--intx");
        using var c = server.Connect();
        Assert.False(c.Version().IsError);
        Assert.Equal(1, c.Read(Config, 0x3d, 1)[0]);                              // INTA
        var info = IrqInfo(c, IrqIndexIntx).Payload;
        Assert.Equal(1u + 2 + 4, BinaryPrimitives.ReadUInt32LittleEndian(info.AsSpan(4))); // eventfd, maskable, automasked
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(info.AsSpan(12)));
        using var trigger = EventFdHandle.Create();
        using var unmask = EventFdHandle.Create();
        Assert.False(c.SetIrqs(SetDataEventFd | SetActionTrigger, IrqIndexIntx, 0, 1, [], trigger).IsError);
        Assert.False(c.SetIrqs(SetDataEventFd | SetActionUnmask, IrqIndexIntx, 0, 1, [], unmask).IsError);

        c.Write32(Bar0, RegDoorbell, 1);                 // a completion (an error one: no DMA map) raises the line
        Assert.Equal(1ul, trigger.Consume());
        c.Write32(Bar0, RegDoorbell, 1);                 // automasked until unmasked: no second signal
        Assert.Equal(0ul, trigger.Consume());
        unmask.Signal();                                 // the guest's EOI (KVM's resample), line still up: fires again
        Settle(c);
        Assert.Equal(1ul, trigger.Consume());
        Assert.Equal(2u, c.Read32(Bar0, RegIrqCount));   // every signal counts, the re-fire too
        c.Write32(Bar0, RegIrqAck, 1);                   // acknowledged: the line is low
        unmask.Signal();
        Settle(c);
        Assert.Equal(0ul, trigger.Consume());
        c.Write32(Bar0, RegDoorbell, 1);
        Assert.Equal(1ul, trigger.Consume());
        Assert.Equal(3u, c.Read32(Bar0, RegIrqCount));

        // INTx disabled in the command register: nothing is raised.
        c.Write32(Bar0, RegIrqAck, 1);
        unmask.Signal();
        c.Write(Config, 0x04, [0x06, 0x04]);
        c.Write32(Bar0, RegDoorbell, 1);
        Assert.Equal(0ul, trigger.Consume());
        c.Write(Config, 0x04, [0x06, 0x00]);

        // MSI-X on: completions raise vectors, not INTx; off again: INTx again.
        c.Write32(Bar0, RegIrqAck, 1);
        var vectors = Enumerable.Range(0, 4).Select(_ => EventFdHandle.Create()).ToArray();
        try
        {
            Assert.False(c.SetIrqs(SetDataEventFd | SetActionTrigger, IrqIndexMsix, 0, 4, [], vectors).IsError);
            c.Write32(Bar0, RegDoorbell, 1);
            Assert.Equal(1ul, vectors[0].Consume());
            Assert.Equal(0ul, trigger.Consume());
            Assert.False(c.SetIrqs(SetDataNone | SetActionTrigger, IrqIndexMsix, 0, 0, []).IsError);
            c.Write32(Bar0, RegDoorbell, 1);
            Assert.Equal(1ul, trigger.Consume());
        }
        finally { foreach (var v in vectors) v.Dispose(); }

        // INTx off (count 0): nothing more is signalled.
        Assert.False(c.SetIrqs(SetDataNone | SetActionTrigger, IrqIndexIntx, 0, 0, []).IsError);
        c.Write32(Bar0, RegIrqAck, 1);
        c.Write32(Bar0, RegDoorbell, 1);
        Assert.Equal(0ul, trigger.Consume());
    }
}
