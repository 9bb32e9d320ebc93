using System.Buffers.Binary;
using System.Text;
using KvmPS.Devices.Passthrough;
using KvmPS.Interop;
using KvmPS.Vm;
using Xunit;

namespace KvmPS.Engine.Tests.Devices.Passthrough;

/// <summary>The vfio-user client against a scripted peer: messages as the spec lays them out, and every way a server can misbehave.</summary>
public class VfioUserClientTests
{
    [Fact]
    public void VersionMessageProposes0Dot1WithJsonCapabilities()
    {
        using var peer = new FakeVfioUserPeer(p => p.Handshake(maxMsgFds: 4));
        using var client = VfioUserClient.Connect(peer.SocketPath);
        peer.Join();
        Assert.Null(peer.ScriptError);
        var v = Assert.Single(peer.Received);
        Assert.Equal(1, v.Command);
        Assert.Equal(0u, v.Flags); // a command
        Assert.Equal((uint)(16 + v.Payload.Length), v.Size);
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(v.Payload));
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(v.Payload.AsSpan(2)));
        string json = Encoding.UTF8.GetString(v.Payload, 4, v.Payload.Length - 5);
        Assert.Equal(0, v.Payload[^1]); // NUL-terminated
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        Assert.True(doc.RootElement.GetProperty("capabilities").GetProperty("max_msg_fds").GetInt32() >= 1);
        Assert.Equal(1, client.ServerMinor);
    }

    [Fact]
    public void AServerOfAnotherMajorVersionIsRefusedNamingTheSocket()
    {
        using var peer = new FakeVfioUserPeer(p =>
        {
            var v = p.Read();
            p.Reply(v, FakeVfioUserPeer.VersionPayload(1, 0, "{}"));
        });
        var e = Assert.Throws<PassthroughException>(() => VfioUserClient.Connect(peer.SocketPath));
        Assert.Contains(peer.SocketPath, e.Message);
        Assert.Contains("speaks vfio-user 1.0", e.Message);
    }

    [Fact]
    public void ANewerMinorVersionIsRefused()
    {
        using var peer = new FakeVfioUserPeer(p => p.Reply(p.Read(), FakeVfioUserPeer.VersionPayload(0, 7, "")));
        var e = Assert.Throws<PassthroughException>(() => VfioUserClient.Connect(peer.SocketPath));
        Assert.Contains("0.7", e.Message);
    }

    [Fact]
    public void MalformedCapabilitiesAreRefused()
    {
        using var peer = new FakeVfioUserPeer(p => p.Reply(p.Read(), FakeVfioUserPeer.VersionPayload(0, 1, "{\"capabilities\":")));
        var e = Assert.Throws<PassthroughException>(() => VfioUserClient.Connect(peer.SocketPath));
        Assert.Contains("not valid JSON", e.Message);
    }

    [Fact]
    public void AnOversizedReplyFailsTheTransportAndLaterCallsFailAtOnce()
    {
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            var m = p.Read();
            p.SendRaw(FakeVfioUserPeer.Message(m.Id, m.Command, 1, new byte[16], sizeField: 64 << 20));
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        var e = Assert.Throws<PassthroughException>(() => client.GetDeviceInfo());
        Assert.Contains(peer.SocketPath, e.Message);
        Assert.Contains("claims 67108864 bytes", e.Message);
        Assert.NotNull(client.Failed);
        var again = Assert.Throws<PassthroughException>(() => client.RegionRead(0, 0, new byte[4]));
        Assert.Contains("unusable", again.Message);
    }

    [Fact]
    public void AReplyToAnotherMessageIsMalformed()
    {
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            var m = p.Read();
            p.SendRaw(FakeVfioUserPeer.Message((ushort)(m.Id + 5), m.Command, 1, new byte[16]));
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        var e = Assert.Throws<PassthroughException>(() => client.GetDeviceInfo());
        Assert.Contains("was expected", e.Message);
    }

    [Fact]
    public void AShortRegionReadReplyIsMalformed()
    {
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            var m = p.Read();
            p.Reply(m, m.Payload.Concat(new byte[2]).ToArray()); // 2 data bytes where 4 were asked for
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        var e = Assert.Throws<PassthroughException>(() => client.RegionRead(0, 0x10, new byte[4]));
        Assert.Contains("REGION_READ", e.Message);
    }

    [Fact]
    public void AClosedSocketIsAClearErrorNotAHang()
    {
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            p.Read();
            p.Close();
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        var e = Assert.Throws<PassthroughException>(() => client.Reset());
        Assert.Contains("closed the connection", e.Message);
        Assert.Contains(peer.SocketPath, e.Message);
    }

    [Fact]
    public void ASilentServerTimesOut()
    {
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            p.Read();
            Thread.Sleep(3000);
        });
        using var client = VfioUserClient.Connect(peer.SocketPath, replyTimeoutMs: 300);
        var e = Assert.Throws<PassthroughException>(() => client.Reset());
        Assert.Contains("no DeviceReset reply within 300 ms", e.Message);
    }

    [Fact]
    public void AnErrorReplyThrowsButKeepsTheTransport()
    {
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            var m = p.Read();
            p.SendRaw(FakeVfioUserPeer.Message(m.Id, m.Command, 1 | (1 << 5), [], error: 22));
            p.Reply(p.Read(), []);
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        var e = Assert.Throws<PassthroughException>(() => client.Reset());
        Assert.Contains("errno 22", e.Message);
        Assert.Null(client.Failed);
        client.Reset();
    }

    [Fact]
    public void ServerCommandsBeforeTheReplyAreRefusedWithAnError()
    {
        byte[]? refusal = null;
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            var m = p.Read();
            p.SendRaw(FakeVfioUserPeer.Message(77, 11 /* DMA_READ */, 0, new byte[16]));
            var r = p.Read();
            refusal = [.. BitConverter.GetBytes(r.Id), .. BitConverter.GetBytes(r.Command), .. BitConverter.GetBytes(r.Flags)];
            p.Reply(m, []);
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        client.Reset();
        peer.Join();
        Assert.Null(peer.ScriptError);
        Assert.Equal(77, BitConverter.ToUInt16(refusal!, 0));
        Assert.Equal(11, BitConverter.ToUInt16(refusal!, 2));
        Assert.Equal(1u | (1u << 5), BitConverter.ToUInt32(refusal!, 4)); // reply + error
    }

    [Fact]
    public void RegionReadAndWriteMessagesAreLaidOutAsTheSpecSays()
    {
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            var read = p.Read();
            var reply = new byte[16 + 4];
            read.Payload.AsSpan(0, 16).CopyTo(reply);
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(16), 0xCAFEF00D);
            p.Reply(read, reply);
            var write = p.Read();
            p.Reply(write, write.Payload.AsSpan(0, 16));
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        var data = new byte[4];
        client.RegionRead(2, 0x1238, data);
        Assert.Equal(0xCAFEF00Du, BinaryPrimitives.ReadUInt32LittleEndian(data));
        client.RegionWrite(7, 0x44, [1, 2]);
        peer.Join();
        Assert.Null(peer.ScriptError);
        var r = peer.Received[1];
        Assert.Equal(9, r.Command);
        Assert.Equal(16, r.Payload.Length); // offset u64, region u32, count u32
        Assert.Equal(0x1238UL, BinaryPrimitives.ReadUInt64LittleEndian(r.Payload));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(r.Payload.AsSpan(8)));
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32LittleEndian(r.Payload.AsSpan(12)));
        var w = peer.Received[2];
        Assert.Equal(10, w.Command);
        Assert.Equal(18, w.Payload.Length);
        Assert.Equal(0x44UL, BinaryPrimitives.ReadUInt64LittleEndian(w.Payload));
        Assert.Equal(7u, BinaryPrimitives.ReadUInt32LittleEndian(w.Payload.AsSpan(8)));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(w.Payload.AsSpan(12)));
        Assert.Equal(new byte[] { 1, 2 }, w.Payload[16..]);
    }

    [Fact]
    public void DmaMapCarriesTheGuestRamMemfd()
    {
        using var memory = GuestMemory.Create(MemoryLayout.MinimumRamBytes, new GuestMemoryOptions { Memfd = true });
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            for (int i = 0; i < memory.Regions.Count; i++) p.Reply(p.Read(), []);
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        client.MapGuestMemory(memory);
        peer.Join();
        Assert.Null(peer.ScriptError);
        var map = peer.Received[1];
        Assert.Equal(2, map.Command);
        Assert.Equal(32, map.Payload.Length);
        Assert.Equal(32u, BinaryPrimitives.ReadUInt32LittleEndian(map.Payload));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(map.Payload.AsSpan(4))); // readable | writeable
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(map.Payload.AsSpan(8)));
        Assert.Equal(memory.Regions[0].GuestAddress, BinaryPrimitives.ReadUInt64LittleEndian(map.Payload.AsSpan(16)));
        Assert.Equal(memory.Regions[0].SizeBytes, BinaryPrimitives.ReadUInt64LittleEndian(map.Payload.AsSpan(24)));
        var fd = Assert.Single(map.Fds);
        Assert.Equal((long)memory.Regions[0].SizeBytes, fd.SizeBytes); // the very memfd: same size, and the same pages below
        memory.Write(0x1000, [0xAB, 0xCD]);
        nint mapped = Vfio.MapShared(fd, 0, 0x2000, "test");
        try { unsafe { Assert.Equal(0xAB, ((byte*)mapped)[0x1000]); Assert.Equal(0xCD, ((byte*)mapped)[0x1001]); } }
        finally { Vfio.Unmap(mapped, 0x2000); }
    }

    [Fact]
    public void DmaMapWithoutMemfdRamSaysWhatIsMissing()
    {
        using var memory = GuestMemory.Create(MemoryLayout.MinimumRamBytes);
        using var peer = new FakeVfioUserPeer(p => p.Handshake());
        using var client = VfioUserClient.Connect(peer.SocketPath);
        var e = Assert.Throws<PassthroughException>(() => client.MapGuestMemory(memory));
        Assert.Contains("memfd", e.Message);
    }

    [Fact]
    public void SetIrqsSplitsEventfdsByTheServersMaxMsgFds()
    {
        var fds = Enumerable.Range(0, 3).Select(_ => EventFdHandle.Create()).ToArray();
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake(maxMsgFds: 2);
            p.Reply(p.Read(), []);
            p.Reply(p.Read(), []);
            p.Reply(p.Read(), []);
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        client.SetIrqEventFds(Vfio.VFIO_PCI_MSIX_IRQ_INDEX, fds);
        client.SetIrqEventFds(Vfio.VFIO_PCI_MSIX_IRQ_INDEX, []);
        peer.Join();
        Assert.Null(peer.ScriptError);
        var (a, b, off) = (peer.Received[1], peer.Received[2], peer.Received[3]);
        Assert.All(new[] { a, b, off }, m => Assert.Equal(8, m.Command));
        Assert.Equal(2, a.Fds.Count);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(a.Payload.AsSpan(12)));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(a.Payload.AsSpan(16)));
        Assert.Single(b.Fds);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(b.Payload.AsSpan(12)));
        Assert.Equal(Vfio.VFIO_IRQ_SET_DATA_EVENTFD | Vfio.VFIO_IRQ_SET_ACTION_TRIGGER, BinaryPrimitives.ReadUInt32LittleEndian(a.Payload.AsSpan(4)));
        Assert.Equal(Vfio.VFIO_IRQ_SET_DATA_NONE | Vfio.VFIO_IRQ_SET_ACTION_TRIGGER, BinaryPrimitives.ReadUInt32LittleEndian(off.Payload.AsSpan(4)));
        Assert.Empty(off.Fds);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(off.Payload.AsSpan(16)));
        // The server's copy signals ours: the same eventfd.
        unsafe
        {
            ulong one = 1;
            Assert.Equal(8, Libc.Write(a.Fds[1].Descriptor, &one, 8));
        }
        Assert.Equal(1UL, fds[1].Consume());
        foreach (var f in fds) f.Dispose();
    }

    [Fact]
    public void RegionInfoReadsTheSparseMmapCapabilityAndKeepsTheFd()
    {
        using var backing = MemfdHandle.Create("bar", 0x4000, hugetlb: false);
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            var m = p.Read();
            var reply = new byte[32 + 16 + 32];
            BinaryPrimitives.WriteUInt32LittleEndian(reply, (uint)reply.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), Vfio.VFIO_REGION_INFO_FLAG_READ | Vfio.VFIO_REGION_INFO_FLAG_WRITE | Vfio.VFIO_REGION_INFO_FLAG_MMAP | Vfio.VFIO_REGION_INFO_FLAG_CAPS);
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(8), 2);
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(12), 32);
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(16), 0x4000);
            BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(32), Vfio.VFIO_REGION_INFO_CAP_SPARSE_MMAP);
            BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(34), 1);
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(40), 2);
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(48), 0x0);
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(56), 0x1000);
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(64), 0x2000);
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(72), 0x2000);
            p.Reply(m, reply, [backing]);
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        var region = client.GetRegionInfo(2);
        Assert.True(region.Mappable);
        Assert.Equal(0x4000UL, region.Size);
        Assert.Equal([new MmapArea(0, 0x1000), new MmapArea(0x2000, 0x2000)], region.Areas);
        Assert.NotNull(region.MapFd);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(peer.Received[1].Payload.AsSpan(8))); // asked for region 2
    }

    [Fact]
    public void ASparseAreaOutsideTheRegionIsMalformed()
    {
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            var m = p.Read();
            var reply = new byte[32 + 16 + 16];
            BinaryPrimitives.WriteUInt32LittleEndian(reply, (uint)reply.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), Vfio.VFIO_REGION_INFO_FLAG_CAPS);
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(12), 32);
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(16), 0x1000);
            BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(32), Vfio.VFIO_REGION_INFO_CAP_SPARSE_MMAP);
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(40), 1);
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(48), 0x800);
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(56), 0x1000);
            p.Reply(m, reply);
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        var e = Assert.Throws<PassthroughException>(() => client.GetRegionInfo(0));
        Assert.Contains("outside the region", e.Message);
    }

    [Fact]
    public void AMissingSocketIsRefusedNamingIt()
    {
        string path = Path.Combine(Path.GetTempPath(), $"kvmps-no-such-{Guid.NewGuid():N}.sock");
        var e = Assert.Throws<PassthroughException>(() => VfioUserClient.Connect(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("cannot connect", e.Message);
    }
}
