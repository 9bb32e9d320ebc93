using System.Buffers.Binary;
using KvmPS.Devices.Passthrough;
using KvmPS.Devices.Pci;
using KvmPS.Interop;
using KvmPS.Vm;
using Xunit;

namespace KvmPS.Engine.Tests.Devices.Passthrough;

/// <summary>The MSI capability's registers as a guest sees them, garbage writes included.</summary>
public sealed class MsiCapabilityTests
{
    private static void Write(MsiCapability c, int offset, uint value, int bytes)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        c.Write(offset, b[..bytes]);
    }

    private static uint Read(MsiCapability c, int offset, int bytes)
    {
        uint v = 0;
        for (int i = 0; i < bytes; i++) v |= (uint)c.ReadByte(offset + i) << (8 * i);
        return v;
    }

    [Fact]
    public void ReservedAndReadOnlyBitsKeepTheirValueAndMultipleMessageEnableIsCapped()
    {
        var c = new MsiCapability(0x0184, new FakeMsi());        // 64-bit, per-vector mask, 4 vectors capable
        Assert.Equal(24, c.Size);
        Assert.Equal(0x0184u, Read(c, 2, 2));
        Write(c, 2, 0xFFFF, 2);                                  // every bit: only enable and MME (capped at 2) stick
        Assert.Equal(0x01A5u, Read(c, 2, 2));
        Assert.True(c.Enabled);
        Assert.Equal(4, c.VectorCount);
        Write(c, 4, 0xFEE0_1003, 4);                             // address bits 1:0 read as zero
        Assert.Equal(0xFEE0_1000u, Read(c, 4, 4));
        Write(c, 12, 0xABCD_1234, 4);                            // data is 16 bits; the rest is reserved
        Assert.Equal(0x1234u, Read(c, 12, 4));
        Write(c, 16, 0xFFFF_FFFF, 4);                            // mask bits of vectors the function has
        Assert.Equal(0xFu, Read(c, 16, 4));
        Write(c, 20, 0xFFFF_FFFF, 4);                            // pending bits are read-only
        Assert.Equal(0u, Read(c, 20, 4));
        Assert.Equal(0u, Read(c, 0x40, 4));                      // past the capability: nothing
    }

    [Fact]
    public void MultipleMessagesReplaceTheDataLowBitsAndMaskingLatchesPending()
    {
        var msi = new FakeMsi();
        var c = new MsiCapability(0x0186, msi);                  // 8 vectors capable
        Write(c, 4, 0xFEE0_0000, 4);
        Write(c, 12, 0x4043, 2);                                 // low bits set: replaced by the vector number
        Write(c, 16, 0x2, 4);                                    // vector 1 masked
        Write(c, 2, 0x0021, 2);                                  // MME 2 (4 vectors), enabled
        Assert.True(c.Notify(3));
        Assert.Equal((0xFEE0_0000UL, 0x4043u), Assert.Single(msi.Fired));
        Assert.True(c.Notify(1));                                // masked: pending
        Assert.Single(msi.Fired);
        Assert.Equal(0x2u, c.PendingBits);
        Assert.False(c.Notify(4));                               // not enabled: no such vector
        Write(c, 16, 0, 4);                                      // unmasked: delivered
        Assert.Equal((0xFEE0_0000UL, 0x4041u), msi.Fired[^1]);
        Assert.Equal(0u, c.PendingBits);
    }

    [Fact]
    public void ThirtyTwoBitCapabilityWithoutMaskingHasItsShortLayout()
    {
        var c = new MsiCapability(0x000E, new FakeMsi());        // 32-bit, MMC 7 (reserved): capped at 32 vectors
        Assert.Equal(10, c.Size);
        Assert.Equal(32, c.CapableVectors);
        Write(c, 8, 0x0000_0041, 4);                             // data at 8 in the 32-bit layout
        Assert.Equal(0x41u, Read(c, 8, 2));
        Write(c, 4, 0xFEE0_0000, 4);
        Assert.Equal(0xFEE0_0000UL, c.Address);
        Assert.False(c.IsMasked(0));
    }
}

/// <summary>MSI of a passthrough function: emulated, handed to the device through SET_IRQS, bound as irqfds while deliverable.</summary>
public sealed class PassthroughMsiTests : IDisposable
{
    private const int Msi = 0x70;
    private readonly FakeTransport _transport = new();
    private readonly FakeIrqfdMsi _msi = new();
    private readonly FakeWatcher _watcher = new();
    private readonly List<string> _log = [];
    private readonly PassthroughDevice _device;

    public PassthroughMsiTests()
    {
        // The capability list: MSI-X (0x50) -> vendor (0x60) -> MSI at 0x70: 64-bit, per-vector masking, 4 vectors.
        var c = _transport.Config;
        c[0x34] = 0x50;
        c[0x61] = Msi;
        c[Msi] = 0x05; c[Msi + 1] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(Msi + 2), 0x0184);
        c[0x3D] = 1;
        _device = PassthroughDevice.Create(_transport, null, new PassthroughHost(_msi, _watcher.Watch, null,
            (gsi, trigger, resample) => new Unbind()), _log.Add);
        new PciBus(new MmioBus(), VirtioPciTransportTests.TestWindows, null, _log.Add).AddDevice(3, _device);
    }

    public void Dispose() => _device.Dispose();

    private sealed class Unbind : IDisposable { public void Dispose() { } }

    private void Write(int offset, uint value, int bytes)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        _device.ConfigWrite(offset, b[..bytes]);
    }

    private uint Read(int offset, int bytes)
    {
        Span<byte> b = stackalloc byte[4];
        _device.ConfigRead(offset, b[..bytes]);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private void Program(uint data, uint mask)
    {
        Write(Msi + 4, 0xFEE0_0000, 4);
        Write(Msi + 8, 0, 4);
        Write(Msi + 12, data, 2);
        Write(Msi + 16, mask, 4);
    }

    [Fact]
    public void EnablingHandsTheDeviceItsVectorsAndBindsTheUnmaskedOnes()
    {
        Assert.Equal(0x0184_0005u, Read(Msi, 4));                // in the list, as the device has it, off
        Program(0x40, mask: 0x2);
        _transport.IrqSets.Clear();
        Write(Msi + 2, 0x0021, 2);                               // MME 2 (4 vectors), enabled
        Assert.Equal([(0, 0), (1, 4)], _transport.IrqSets);      // INTx off, then MSI with 4 eventfds
        Assert.Equal(Vfio.VFIO_PCI_MSI_IRQ_INDEX, _device.IrqIndex);
        Assert.Equal(3, _device.DirectVectors);                  // vector 1 is masked: relayed
        var route2 = _msi.Routes.Single(r => r.Bound.Contains(_transport.LastIrqFds[2]));
        route2.Fire();
        Assert.Equal((0xFEE0_0000UL, 0x42u), _msi.Fired[^1]);   // vector n sends data | n
        Assert.Empty(_transport.Writes.Where(w => w.Region == Vfio.VFIO_PCI_CONFIG_REGION_INDEX && w.Offset >= Msi && w.Offset < Msi + 24));

        _watcher.Watched[_transport.LastIrqFds[1]]();            // the masked vector fires: latched
        Assert.Equal(0x2u, Read(Msi + 20, 4));
        int fired = _msi.Fired.Count;
        Write(Msi + 16, 0, 4);                                   // unmasked: delivered, then bound
        Assert.Equal((0xFEE0_0000UL, 0x41u), _msi.Fired[fired]);
        Assert.Equal(0u, Read(Msi + 20, 4));
        Assert.Equal(4, _device.DirectVectors);

        _transport.IrqSets.Clear();
        Write(Msi + 2, 0x0000, 2);                               // off: MSI torn down, INTx back
        Assert.Equal([(1, 0), (0, 1), (0, -1)], _transport.IrqSets);
        Assert.Equal(0, _device.DirectVectors);
        Assert.All(_msi.Routes, r => Assert.Empty(r.Bound));
    }

    [Fact]
    public void GarbageFromTheGuestIsHandledLikeHardware()
    {
        Write(Msi + 2, 0xFFFF, 2);                               // MME 7 > capable: capped at 4 vectors, enabled
        Assert.Equal(0x01A5u, Read(Msi + 2, 2));
        Assert.Equal((1, 4), _transport.IrqSets[^1]);
        Write(Msi + 4, 0xDEAD_BEEF, 4);                          // outside the interrupt range: KVM refuses, relayed
        Write(Msi + 8, 0xFFFF_FFFF, 4);
        Assert.Equal(0xDEAD_BEECu, Read(Msi + 4, 4));
        Assert.Equal(0, _device.DirectVectors);
        _watcher.Watched[_transport.LastIrqFds[0]]();            // and a signal then delivers nothing
        Assert.Empty(_msi.Fired);
        for (int o = Msi; o < Msi + 24; o++) Write(o, 0xFF, 1);   // byte by byte, over ID and next pointer too
        Assert.Equal(0x05u, Read(Msi, 1));
        Assert.Equal(0u, Read(Msi + 1, 1));
        Write(Msi + 1, 0xFFFF_FFFF, 4);                          // unaligned, across the capability's start
        Assert.Equal(0x01A5u, Read(Msi + 2, 2));
        Assert.Equal(4, _transport.LastIrqFds.Count);
    }

    [Fact]
    public void MsiAndMsiXAreExclusiveAndMsiXWins()
    {
        Program(0x40, mask: 0);
        Write(Msi + 2, 0x0001, 2);                               // MSI, one vector
        Assert.Equal((1, 1), _transport.IrqSets[^1]);
        _transport.IrqSets.Clear();
        Write(0x52, 0x8000, 2);                                  // MSI-X on while MSI is on: MSI off at the device, MSI-X on
        Assert.Equal([(1, 0), (2, 4)], _transport.IrqSets);
        Assert.Equal(Vfio.VFIO_PCI_MSIX_IRQ_INDEX, _device.IrqIndex);
        Assert.Equal(0, _device.DirectVectors);                    // MSI-X vectors are masked at reset: the MSI route is not used
        _transport.IrqSets.Clear();
        Write(Msi + 2, 0x0000, 2);                               // MSI off under MSI-X: nothing changes at the device
        Write(Msi + 2, 0x0001, 2);
        Assert.Empty(_transport.IrqSets);
        Write(0x52, 0x0000, 2);                                  // MSI-X off with MSI still on: back to MSI
        Assert.Equal([(2, 0), (1, 1)], _transport.IrqSets);
        Assert.Equal(1, _device.DirectVectors);
    }

    [Fact]
    public void TheDevicesMsiIrqIndexBoundsTheCapability()
    {
        var two = new FakeTransport();                           // MSI claims 8 vectors, the device signals 2
        BinaryPrimitives.WriteUInt16LittleEndian(two.Config.AsSpan(0x42), 0x0086);
        two.IrqCounts[1] = 2;
        using (var d = PassthroughDevice.Create(two, null, new PassthroughHost(null, null, null), _log.Add))
        {
            Assert.Equal(2, d.Msi!.CapableVectors);
            Span<byte> control = stackalloc byte[2];
            d.ConfigRead(0x42, control);
            Assert.Equal(0x0082, BinaryPrimitives.ReadUInt16LittleEndian(control)); // MMC 1: what the guest may enable
        }
        var none = new FakeTransport();                          // no MSI IRQ index: the capability is hidden
        none.IrqCounts.Remove(1);
        using var e = PassthroughDevice.Create(none, null, new PassthroughHost(null, null, null), _log.Add);
        Assert.Null(e.Msi);
        Span<byte> pointer = stackalloc byte[1];
        e.ConfigRead(0x34, pointer);
        Assert.Equal(0x50, pointer[0]);                          // the list starts at MSI-X
    }

    [Fact]
    public void ASecondMsiCapabilityIsHidden()
    {
        var t = new FakeTransport();                             // MSI at 0x40 and another at 0x70
        t.Config[0x61] = Msi;
        t.Config[Msi] = 0x05; t.Config[Msi + 1] = 0;
        using var d = PassthroughDevice.Create(t, null, new PassthroughHost(null, null, null), _log.Add);
        Span<byte> next = stackalloc byte[1];
        d.ConfigRead(0x61, next);
        Assert.Equal(0, next[0]);                                // the vendor capability ends the list
        d.ConfigWrite(Msi + 2, [0x01]);
        Assert.DoesNotContain(t.IrqSets, s => s.Index == Vfio.VFIO_PCI_MSI_IRQ_INDEX);
        Assert.DoesNotContain(t.Writes, w => w.Region == Vfio.VFIO_PCI_CONFIG_REGION_INDEX && w.Offset == Msi + 2); // not the device's either
    }
}
