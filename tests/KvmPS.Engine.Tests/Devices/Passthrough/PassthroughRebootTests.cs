using System.Buffers.Binary;
using KvmPS.Devices.Config;
using KvmPS.Devices.Passthrough;
using KvmPS.Interop;
using KvmPS.Vm;
using Xunit;

namespace KvmPS.Engine.Tests.Devices.Passthrough;

/// <summary>
/// A guest reboot keeps a vfio-user connection instead of connecting again by path (VmmHost.KeepFilesForReboot): the
/// old boot's function lets go of it without closing it, the client resets the device and takes the old boot's RAM
/// back over it, and the next boot's function does not reset the device a second time.
/// </summary>
public sealed class PassthroughRebootTests
{
    private static PassthroughDevice Create(FakeTransport transport, bool alreadyReset = false) =>
        PassthroughDevice.Create(transport, null, new PassthroughHost(null, null, null), _ => { }, alreadyReset);

    [Fact]
    public void AKeptTransportOutlivesItsFunctionAndTheNextFunctionDoesNotResetItAgain()
    {
        var transport = new FakeTransport();
        var first = Create(transport);
        Assert.Equal(1, transport.Resets);
        Assert.Same(transport, first.KeepTransport());
        first.Dispose();
        Assert.Equal(0, transport.Disposals);

        var next = Create(transport, alreadyReset: true);
        Assert.Equal(1, transport.Resets);
        Assert.Equal(0x4B56, next.VendorId);
        next.Dispose(); // not kept: closed with its function
        Assert.Equal(1, transport.Disposals);
    }

    [Fact]
    public void PrepareForNextBootResetsTheDeviceThenUnmapsEveryRangeItMappedOnTheSameConnection()
    {
        using var memory = GuestMemory.Create(MemoryLayout.MinimumRamBytes, new GuestMemoryOptions { Memfd = true });
        int regions = memory.Regions.Count;
        using var peer = new FakeVfioUserPeer(p =>
        {
            p.Handshake();
            for (int i = 0; i < regions; i++) p.Reply(p.Read(), []);
            var info = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(info, 16);
            BinaryPrimitives.WriteUInt32LittleEndian(info.AsSpan(4), Vfio.VFIO_DEVICE_FLAGS_PCI | Vfio.VFIO_DEVICE_FLAGS_RESET);
            BinaryPrimitives.WriteUInt32LittleEndian(info.AsSpan(8), 9);
            p.Reply(p.Read(), info);                                     // DEVICE_GET_INFO
            p.Reply(p.Read(), []);                                       // DEVICE_RESET
            for (int i = 0; i < regions; i++) { var m = p.Read(); p.Reply(m, m.Payload); } // DMA_UNMAP echoes its request
        });
        using var client = VfioUserClient.Connect(peer.SocketPath);
        client.MapGuestMemory(memory);
        Assert.True(client.PrepareForNextBoot());
        peer.Join();
        Assert.Null(peer.ScriptError);
        Assert.Null(client.Failed);

        ushort[] expected = [1, .. Enumerable.Repeat((ushort)2, regions), 4, 13, .. Enumerable.Repeat((ushort)3, regions)];
        Assert.Equal(expected, peer.Received.Select(m => m.Command));
        var unmaps = peer.Received.Where(m => m.Command == 3).ToList();
        for (int i = 0; i < regions; i++)
        {
            var payload = unmaps[i].Payload;
            Assert.Equal(24, payload.Length);
            Assert.Equal(24u, BinaryPrimitives.ReadUInt32LittleEndian(payload));
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(4))); // no dirty bitmap
            Assert.Equal(memory.Regions[i].GuestAddress, BinaryPrimitives.ReadUInt64LittleEndian(payload.AsSpan(8)));
            Assert.Equal(memory.Regions[i].SizeBytes, BinaryPrimitives.ReadUInt64LittleEndian(payload.AsSpan(16)));
            Assert.Empty(unmaps[i].Fds);
        }
    }

    private sealed class Connection : IDisposable
    {
        public int Disposals;
        public void Dispose() => Disposals++;
    }

    [Fact]
    public void AKeptConnectionIsTakenOnceByItsTypeAndClosedWhenNobodyTookIt()
    {
        var taken = new Connection();
        using (var files = new PassedFiles(taken))
        {
            Assert.Equal(0, files.Count);
            Assert.Null(files.TakeConnection<VfioUserClient>()); // another kind: stays
            Assert.Same(taken, files.TakeConnection<Connection>());
            Assert.Null(files.TakeConnection<Connection>());
        }
        Assert.Equal(0, taken.Disposals);

        var untaken = new Connection();
        new PassedFiles(untaken).Dispose();
        Assert.Equal(1, untaken.Disposals);
    }
}
