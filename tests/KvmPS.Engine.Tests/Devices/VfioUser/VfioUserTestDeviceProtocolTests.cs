using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using KvmPS.Interop;

namespace KvmPS.Engine.Tests.Devices.VfioUser;

/// <summary>
/// The vfio-user test device server (tests/KvmPS.VfioUserTestDevice) against an independent test client: protocol,
/// device model, DMA through a memfd, MSI-X through eventfds, and its answers to malformed input.
/// </summary>
public sealed unsafe class VfioUserTestDeviceProtocolTests
{
    private const uint Bar0 = 0, Bar2 = 2, Bar4 = 4, Config = 7;
    private const uint RegMagic = 0x00, RegDmaAddrLo = 0x08, RegDmaAddrHi = 0x0c, RegDmaLen = 0x10, RegDmaOp = 0x14,
        RegDmaKey = 0x18, RegDoorbell = 0x1c, RegStatus = 0x20, RegChecksum = 0x24, RegCompleted = 0x28,
        RegIrqVector = 0x2c, RegError = 0x30, RegScratch = 0x34, RegIrqCount = 0x38, RegResetCount = 0x3c,
        RegBar2SumLen = 0x40, RegBar2Sum = 0x44;
    private const uint SetDataNone = 1, SetDataBool = 2, SetDataEventFd = 4, SetActionMask = 8, SetActionUnmask = 16, SetActionTrigger = 32;
    private const ulong DmaBase = 0x10_0000, DmaBytes = 1 << 20;

    private static uint Fnv1a(ReadOnlySpan<byte> data)
    {
        uint h = 2166136261;
        foreach (byte b in data) h = (h ^ b) * 16777619;
        return h;
    }

    private static VfioUserTestClient Negotiated(VfioUserTestServer server)
    {
        var c = server.Connect();
        var r = c.Version();
        Assert.False(r.IsError, $"VERSION refused: errno {r.Errno}");
        return c;
    }

    [Fact]
    public void VersionNegotiationAnswersWithCapabilities()
    {
        using var server = new VfioUserTestServer();
        using var c = server.Connect();
        var r = c.Version();
        Assert.False(r.IsError);
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(r.Payload));
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(r.Payload.AsSpan(2)));
        int nul = Array.IndexOf(r.Payload, (byte)0, 4);
        Assert.True(nul > 4, "the capabilities JSON is NUL-terminated");
        using var doc = JsonDocument.Parse(Encoding.UTF8.GetString(r.Payload, 4, nul - 4));
        var caps = doc.RootElement.GetProperty("capabilities");
        Assert.Equal(1 << 20, caps.GetProperty("max_data_xfer_size").GetInt32());
        Assert.Equal(8, caps.GetProperty("max_msg_fds").GetInt32());
    }

    [Fact]
    public void CommandsBeforeVersionAndOtherMajorVersionsAreRefused()
    {
        using var server = new VfioUserTestServer();
        using var c = server.Connect();
        var early = c.Call(VfioUserTestClient.DEVICE_GET_INFO, BitConverter.GetBytes(16u));
        Assert.True(early.IsError);
        Assert.Equal((uint)VfioUserTestClient.EINVAL, early.Errno);
        var other = c.Version(major: 1);
        Assert.True(other.IsError);
        var badJson = c.Version(json: "{not json");
        Assert.True(badJson.IsError);
        Assert.False(c.Version().IsError);
    }

    [Fact]
    public void DeviceRegionsAndConfigSpaceDescribeTheTestDevice()
    {
        using var server = new VfioUserTestServer();
        using var c = Negotiated(server);
        var info = c.Call(VfioUserTestClient.DEVICE_GET_INFO, BitConverter.GetBytes(16u));
        Assert.False(info.IsError);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(info.Payload.AsSpan(4)));  // RESET | PCI
        Assert.Equal(9u, BinaryPrimitives.ReadUInt32LittleEndian(info.Payload.AsSpan(8)));  // regions
        Assert.Equal(5u, BinaryPrimitives.ReadUInt32LittleEndian(info.Payload.AsSpan(12))); // irq indexes

        ulong Size(VfioUserReply r) => BinaryPrimitives.ReadUInt64LittleEndian(r.Payload.AsSpan(16));
        uint Flags(VfioUserReply r) => BinaryPrimitives.ReadUInt32LittleEndian(r.Payload.AsSpan(4));
        var bar0 = c.RegionInfo(Bar0);
        Assert.Equal(4096ul, Size(bar0));
        Assert.Equal(3u, Flags(bar0)); // read | write, trapped
        Assert.Empty(bar0.Fds);
        Assert.Equal(4096ul, Size(c.RegionInfo(Config)));
        Assert.Equal(0ul, Size(c.RegionInfo(1)));

        var bar2 = c.RegionInfo(Bar2);
        Assert.Equal(64ul * 1024, Size(bar2));
        Assert.Equal(0xfu, Flags(bar2)); // read | write | mmap | caps
        Assert.Single(bar2.Fds);
        Assert.Equal(32u, BinaryPrimitives.ReadUInt32LittleEndian(bar2.Payload.AsSpan(12))); // cap_offset
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(bar2.Payload.AsSpan(32)));   // sparse mmap
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(bar2.Payload.AsSpan(40)));  // one area
        Assert.Equal(64ul * 1024, BinaryPrimitives.ReadUInt64LittleEndian(bar2.Payload.AsSpan(56)));
        foreach (var fd in bar2.Fds) fd.Dispose();

        var small = c.RegionInfo(Bar2, argsz: 32); // too small for the capability: the needed size comes back
        Assert.Equal(64u, BinaryPrimitives.ReadUInt32LittleEndian(small.Payload));
        Assert.Equal(32, small.Payload.Length);
        foreach (var fd in small.Fds) fd.Dispose();

        Assert.Equal(0x7f5e1b36u, c.Read32(Config, 0));
        Assert.Equal(0x40, c.Read(Config, 0x34, 1)[0]);
        Assert.Equal(0x11, c.Read(Config, 0x40, 1)[0]);           // MSI-X
        Assert.Equal(3u, c.Read32(Config, 0x40) >> 16 & 0x7ff);     // 4 vectors
        Assert.Equal(4u, c.Read32(Config, 0x44));                   // table: BAR4 + 0
        c.Write32(Config, 0x10, 0xffffffff);                        // BAR sizing
        Assert.Equal(0xfffff000u, c.Read32(Config, 0x10));
        c.Write32(Config, 0x18, 0xffffffff);
        Assert.Equal(0xffff0008u, c.Read32(Config, 0x18));
        c.Write32(Config, 0x00, 0);                                 // ids are read-only
        Assert.Equal(0x7f5e1b36u, c.Read32(Config, 0));

        var msix = c.Call(VfioUserTestClient.DEVICE_GET_IRQ_INFO, IrqInfoRequest(2));
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32LittleEndian(msix.Payload.AsSpan(12)));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(msix.Payload.AsSpan(4)) & 1); // eventfd
    }

    private static byte[] IrqInfoRequest(uint index)
    {
        var p = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(p, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(8), index);
        return p;
    }

    [Fact]
    public void MmapBarIsSharedWithRegionAccessAndTheDevice()
    {
        using var server = new VfioUserTestServer();
        using var c = Negotiated(server);
        var bar2 = c.RegionInfo(Bar2);
        using var fd = Assert.Single(bar2.Fds);
        nint map = Libc.Mmap(0, 65536, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd.Descriptor, 0);
        Assert.NotEqual(Libc.MAP_FAILED, map);
        try
        {
            var bytes = new Span<byte>((void*)map, 65536);
            for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i * 7 + 3);
            Assert.Equal(bytes[..256].ToArray(), c.Read(Bar2, 0, 256));
            c.Write32(Bar0, RegBar2SumLen, 4096);
            Assert.Equal(Fnv1a(bytes[..4096]), c.Read32(Bar0, RegBar2Sum));
            Assert.False(c.Write(Bar2, 0x100, [0xaa, 0xbb]).IsError); // the trapped path lands in the same memory
            Assert.Equal(0xaa, bytes[0x100]);
            Assert.Equal(0xbb, bytes[0x101]);
        }
        finally { Libc.Munmap(map, 65536); }
    }

    [Fact]
    public void DmaRoundTripTransformsGuestMemoryAndSignalsTheMsixEventfd()
    {
        using var server = new VfioUserTestServer();
        using var c = Negotiated(server);
        using var ram = MemfdHandle.Create("vfu-test-ram", 2 * DmaBytes, hugetlb: false);
        nint map = Libc.Mmap(0, (nuint)(2 * DmaBytes), Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, ram.Descriptor, 0);
        Assert.NotEqual(Libc.MAP_FAILED, map);
        var vectors = Enumerable.Range(0, 4).Select(_ => EventFdHandle.Create()).ToArray();
        try
        {
            // Guest-physical DmaBase maps memfd offset DmaBytes: the device must honour the offset.
            Assert.False(c.DmaMap(DmaBase, DmaBytes, DmaBytes, 3, ram).IsError);
            Assert.Equal((uint)VfioUserTestClient.EEXIST, c.DmaMap(DmaBase + 4096, 4096, 0, 3, ram).Errno);
            Assert.False(c.SetIrqs(SetDataEventFd | SetActionTrigger, 2, 0, 4, [], vectors).IsError);

            var buffer = new Span<byte>((void*)(map + (nint)DmaBytes + 0x2000), 1000);
            for (int round = 0; round < 3; round++)
            {
                for (int i = 0; i < buffer.Length; i++) buffer[i] = (byte)(i * 13 + round);
                byte[] expected = buffer.ToArray();
                Array.Reverse(expected);
                byte key = (byte)(0x5a + round);
                for (int i = 0; i < expected.Length; i++) expected[i] ^= key;
                c.Write32(Bar0, RegDmaAddrLo, (uint)(DmaBase + 0x2000));
                c.Write32(Bar0, RegDmaAddrHi, 0);
                c.Write32(Bar0, RegDmaLen, (uint)buffer.Length);
                c.Write32(Bar0, RegDmaOp, 3); // reverse, then XOR
                c.Write32(Bar0, RegDmaKey, key);
                c.Write32(Bar0, RegIrqVector, (uint)(round % 4));
                c.Write32(Bar0, RegDoorbell, 1);
                Assert.Equal(1u, c.Read32(Bar0, RegStatus));
                Assert.Equal(expected, buffer.ToArray());
                Assert.Equal(Fnv1a(expected), c.Read32(Bar0, RegChecksum));
                Assert.Equal(1ul, vectors[round % 4].Consume());
                c.Write32(Bar0, RegStatus, 1); // write 1 to clear
                Assert.Equal(0u, c.Read32(Bar0, RegStatus));
            }
            Assert.Equal(3u, c.Read32(Bar0, RegCompleted));
            Assert.Equal(3u, c.Read32(Bar0, RegIrqCount));
            Assert.Equal(0ul, vectors[3].Consume());

            // Outside every DMA region: an error status, still an interrupt.
            c.Write32(Bar0, RegDmaAddrLo, 0x4000_0000);
            c.Write32(Bar0, RegIrqVector, 1);
            c.Write32(Bar0, RegDoorbell, 1);
            Assert.Equal(2u, c.Read32(Bar0, RegStatus));
            Assert.Equal(2u, c.Read32(Bar0, RegError));
            Assert.Equal(1ul, vectors[1].Consume());

            // A masked vector stays pending until unmasked.
            Assert.False(c.SetIrqs(SetDataNone | SetActionMask, 2, 1, 1, []).IsError);
            c.Write32(Bar0, RegDoorbell, 1);
            Assert.Equal(0ul, vectors[1].Consume());
            Assert.False(c.SetIrqs(SetDataBool | SetActionUnmask, 2, 1, 1, [1]).IsError);
            Assert.Equal(1ul, vectors[1].Consume());

            // Unmapped: the same address now fails.
            Assert.False(c.DmaUnmap(DmaBase, DmaBytes).IsError);
            Assert.Equal((uint)VfioUserTestClient.ENOENT, c.DmaUnmap(DmaBase, DmaBytes).Errno);
            c.Write32(Bar0, RegDmaAddrLo, (uint)(DmaBase + 0x2000));
            c.Write32(Bar0, RegDoorbell, 1);
            Assert.Equal(2u, c.Read32(Bar0, RegError));
        }
        finally
        {
            Libc.Munmap(map, (nuint)(2 * DmaBytes));
            foreach (var v in vectors) v.Dispose();
        }
    }

    [Fact]
    public void MsiIsAnIndexOfItsOwnAndMsiXWinsWhileBothHaveEventfds()
    {
        using var server = new VfioUserTestServer();
        using var c = Negotiated(server);
        Assert.Equal(0x50, c.Read(Config, 0x41, 1)[0]);           // MSI-X -> MSI
        Assert.Equal(0x0184_0005u, c.Read32(Config, 0x50));         // MSI: 64-bit, per-vector masking, 4 vectors capable
        var info = c.Call(VfioUserTestClient.DEVICE_GET_IRQ_INFO, IrqInfoRequest(1));
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32LittleEndian(info.Payload.AsSpan(12)));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(info.Payload.AsSpan(4)) & 1); // eventfd

        var msi = Enumerable.Range(0, 2).Select(_ => EventFdHandle.Create()).ToArray();
        var msix = Enumerable.Range(0, 4).Select(_ => EventFdHandle.Create()).ToArray();
        try
        {
            Assert.False(c.SetIrqs(SetDataEventFd | SetActionTrigger, 1, 0, 2, [], msi).IsError);
            void Complete(uint vector)
            {
                c.Write32(Bar0, RegDmaLen, 0);                      // a bad length: an error status, still an interrupt
                c.Write32(Bar0, RegIrqVector, vector);
                c.Write32(Bar0, RegDoorbell, 1);
            }
            Complete(1);
            Assert.Equal(1ul, msi[1].Consume());
            Complete(3);                                            // beyond the two enabled: nothing
            Assert.Equal(0ul, msi[1].Consume());
            Assert.False(c.SetIrqs(SetDataEventFd | SetActionTrigger, 2, 0, 4, [], msix).IsError);
            Complete(0);
            Assert.Equal(1ul, msix[0].Consume());
            Assert.Equal(0ul, msi[0].Consume());
            Assert.False(c.SetIrqs(SetDataNone | SetActionTrigger, 2, 0, 0, []).IsError); // MSI-X off: MSI again
            Complete(0);
            Assert.Equal(1ul, msi[0].Consume());
            Assert.False(c.SetIrqs(SetDataNone | SetActionTrigger, 1, 0, 0, []).IsError);
            Complete(0);
            Assert.Equal(0ul, msi[0].Consume());
            Assert.True(c.SetIrqs(SetDataEventFd | SetActionTrigger, 1, 0, 5, [], [.. msix, msi[0]]).IsError); // 5 > 4 vectors
        }
        finally
        {
            foreach (var v in msi.Concat(msix)) v.Dispose();
        }
    }

    [Fact]
    public void DeviceResetClearsRegistersAndCountsResets()
    {
        using var server = new VfioUserTestServer();
        using var c = Negotiated(server);
        c.Write32(Bar0, RegScratch, 0xdeadbeef);
        c.Write32(Config, 0x04, 0x6);
        Assert.Equal(0xdeadbeefu, c.Read32(Bar0, RegScratch));
        Assert.False(c.Call(VfioUserTestClient.DEVICE_RESET, []).IsError);
        Assert.Equal(0u, c.Read32(Bar0, RegScratch));
        Assert.Equal(1u, c.Read32(Bar0, RegResetCount));
        Assert.Equal(0x30554656u, c.Read32(Bar0, RegMagic));
        Assert.Equal(0, c.Read(Config, 0x04, 1)[0]);
    }

    [Fact]
    public void MalformedCommandsGetErrorRepliesAndTheServerGoesOn()
    {
        using var server = new VfioUserTestServer();
        using var c = Negotiated(server);
        foreach (ushort command in new ushort[] { 2, 3, 4, 5, 7, 8, 9, 10 })
        {
            var r = c.Call(command, [1, 2]); // every one of these needs more than two bytes
            Assert.True(r.IsError, $"command {command} with a 2-byte payload was accepted");
            Assert.Equal((uint)VfioUserTestClient.EINVAL, r.Errno);
        }
        Assert.Equal((uint)VfioUserTestClient.ENOSYS, c.Call(99, []).Errno);
        var outOfRange = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(outOfRange, 4094);
        BinaryPrimitives.WriteUInt32LittleEndian(outOfRange.AsSpan(12), 4); // BAR0 is 4096 bytes: 4094 + 4 crosses its end
        Assert.True(c.Call(VfioUserTestClient.REGION_READ, outOfRange).IsError);
        BinaryPrimitives.WriteUInt32LittleEndian(outOfRange.AsSpan(8), 1); // region 1 is empty
        Assert.True(c.Call(VfioUserTestClient.REGION_READ, outOfRange).IsError);
        Assert.True(c.SetIrqs(SetDataEventFd | SetActionTrigger, 2, 0, 2, []).IsError); // two vectors, no fds
        Assert.True(c.SetIrqs(SetDataNone | SetActionTrigger | SetActionMask, 2, 0, 1, []).IsError);
        Assert.True(c.SetIrqs(SetDataNone | SetActionTrigger, 2, 3, 2, []).IsError); // past the last vector
        Assert.True(c.DmaMap(0x1001, 4096, 0, 3, null).IsError);
        Assert.Equal(0x30554656u, c.Read32(Bar0, RegMagic));

        // A header claiming more than the server accepts breaks the framing: that connection ends, the server stays.
        c.SendRaw(VfioUserTestClient.Frame(500, 9, [], claimedSize: 1u << 30));
        Assert.True(c.PeerClosed());
        using var again = Negotiated(server);
        Assert.Equal(0x30554656u, again.Read32(Bar0, RegMagic));
        Assert.False(server.Process.HasExited);
    }

    [Fact]
    public void FaultKnobsMisbehaveAsAdvertised()
    {
        using (var server = new VfioUserTestServer("--bad-version"))
        using (var c = server.Connect())
            Assert.Equal(9, BinaryPrimitives.ReadUInt16LittleEndian(c.Version().Payload));
        using (var server = new VfioUserTestServer("--oversized-reply"))
        using (var c = Negotiated(server))
        {
            c.SendRaw(VfioUserTestClient.Frame(7, VfioUserTestClient.DEVICE_GET_INFO, BitConverter.GetBytes(16u)));
            Assert.Equal(64u << 20, c.ReadReply(maxPayloadBytes: 1 << 20).SizeBytes);
        }
        using (var server = new VfioUserTestServer("--malformed-reply"))
        using (var c = Negotiated(server))
            Assert.Equal(4, c.Call(VfioUserTestClient.DEVICE_GET_INFO, BitConverter.GetBytes(16u)).Payload.Length);
        using (var server = new VfioUserTestServer("--crash-after", "2"))
        using (var c = Negotiated(server))
        {
            Assert.Equal(0x30554656u, c.Read32(Bar0, RegMagic));
            c.SendRaw(VfioUserTestClient.Frame(9, VfioUserTestClient.DEVICE_GET_INFO, BitConverter.GetBytes(16u)));
            Assert.True(c.PeerClosed());
            Assert.True(server.Process.WaitForExit(10000));
            Assert.Equal(3, server.Process.ExitCode);
        }
    }
}
