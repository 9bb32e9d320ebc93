using System.Buffers.Binary;
using KvmPS.Migration;
using KvmPS.Vm;
using Xunit;

namespace KvmPS.Engine.Tests.Migration;

/// <summary>The migration stream's framing (docs/migration.md): what a receiver accepts and what it refuses, in process.</summary>
public class MigrationStreamTests
{
    private static byte[] Stream(Action<MigrationStream> write)
    {
        var buffer = new MemoryStream();
        using (var s = new MigrationStream(buffer)) write(s);
        return buffer.ToArray();
    }

    private static MigrationStream Reader(byte[] bytes) => new(new MemoryStream(bytes));

    [Fact]
    public void FramesRoundTrip()
    {
        byte[] page = new byte[4096];
        page[7] = 0x5a;
        byte[] bytes = Stream(s =>
        {
            s.WriteHeader();
            s.WriteFrame(MigrationCommand.Pages, [1, 2, 3], page);
            s.WriteText(MigrationCommand.Error, "because");
            s.WriteFrame(MigrationCommand.End, []);
        });
        Assert.Equal(MigrationStream.HeaderBytes + (8 + 3 + 4096 + 4) + (8 + 7 + 4) + (8 + 4), bytes.Length);
        using var r = Reader(bytes);
        r.ReadHeader();
        var f = r.ReadFrame();
        Assert.Equal(MigrationCommand.Pages, f.Command);
        Assert.Equal(3 + 4096, f.Length);
        Assert.Equal(0x5a, f.Data[3 + 7]);
        Assert.Equal("because", r.ReadFrame().Text);
        Assert.Equal(MigrationCommand.End, r.ReadFrame().Command);
    }

    [Fact]
    public void APeersErrorFrameBecomesItsMessage()
    {
        using var r = Reader(Stream(s => s.WriteText(MigrationCommand.Error, "out of memory")));
        var e = Assert.Throws<MigrationException>(() => r.Expect(MigrationCommand.Ready, "destination"));
        Assert.Equal("the destination refused: out of memory", e.Message);
    }

    [Fact]
    public void AFlippedBitIsACrcMismatch()
    {
        byte[] bytes = Stream(s => { s.WriteHeader(); s.WriteFrame(MigrationCommand.Pages, new byte[100]); });
        bytes[MigrationStream.HeaderBytes + 8 + 50] ^= 1;
        using var r = Reader(bytes);
        r.ReadHeader();
        Assert.Contains("CRC-32 mismatch in a Pages frame", Assert.Throws<MigrationException>(() => r.ReadFrame()).Message);
    }

    [Theory]
    [InlineData(5)]    // inside the header
    [InlineData(20)]   // inside a frame header
    [InlineData(60)]   // inside the payload
    [InlineData(130)]  // inside the CRC
    public void ATruncatedStreamSaysSo(int keep)
    {
        byte[] bytes = Stream(s => { s.WriteHeader(); s.WriteFrame(MigrationCommand.State, new byte[110]); });
        using var r = Reader(bytes[..keep]);
        var e = Assert.Throws<MigrationException>(() => { r.ReadHeader(); r.ReadFrame(); });
        Assert.Contains("the stream is truncated", e.Message);
    }

    [Fact]
    public void AnotherFormatVersionIsRefusedNamingBoth()
    {
        byte[] bytes = Stream(s => s.WriteHeader());
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), 5);
        var e = Assert.Throws<MigrationException>(() => Reader(bytes).ReadHeader());
        Assert.Contains("format version 5", e.Message);
        Assert.Contains("versions 1 to 4", e.Message);
    }

    [Fact]
    public void BothVersionsAreRead_TheStorageOneOnlyWhenWritten()
    {
        Assert.Equal(MigrationStream.FormatVersion, Reader(Stream(s => s.WriteHeader())).ReadHeader());
        Assert.Equal(2u, Reader(Stream(s => s.WriteHeader(MigrationStream.StorageFormatVersion))).ReadHeader());
        Assert.Equal(3u, Reader(Stream(s => s.WriteHeader(MigrationStream.DiskHandoverFormatVersion))).ReadHeader());
        Assert.Equal(4u, Reader(Stream(s => s.WriteHeader(MigrationStream.DeviceHandoverFormatVersion))).ReadHeader());
    }

    [Fact]
    public void WithoutTheMagicItIsNotAMigrationStream()
    {
        byte[] bytes = "GET / HTTP/1.1\r\n\r\n"u8.ToArray();
        Assert.Contains("no KVMPSMIG magic", Assert.Throws<MigrationException>(() => Reader(bytes).ReadHeader()).Message);
    }

    [Fact]
    public void UnknownCommandsAndHugeLengthsAreRefusedBeforeAnythingIsAllocated()
    {
        var head = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(head, 99);
        Assert.Contains("unknown frame command 99", Assert.Throws<MigrationException>(() => Reader(head).ReadFrame()).Message);
        BinaryPrimitives.WriteUInt32LittleEndian(head, (uint)MigrationCommand.Pages);
        BinaryPrimitives.WriteUInt32LittleEndian(head.AsSpan(4), uint.MaxValue);
        Assert.Contains("claims 4294967295 bytes", Assert.Throws<MigrationException>(() => Reader(head).ReadFrame()).Message);
    }

    [Fact]
    public void FdPassingStructsHaveTheirCLayout()
    {
        // <bits/socket.h>, x86-64: msghdr 56 bytes (socklen_t namelen padded to 8), iovec 16, cmsghdr 16 + data.
        Assert.Equal(56, System.Runtime.CompilerServices.Unsafe.SizeOf<KvmPS.Interop.msghdr>());
        Assert.Equal(16, (int)System.Runtime.InteropServices.Marshal.OffsetOf<KvmPS.Interop.msghdr>("msg_iov"));
        Assert.Equal(32, (int)System.Runtime.InteropServices.Marshal.OffsetOf<KvmPS.Interop.msghdr>("msg_control"));
        Assert.Equal(48, (int)System.Runtime.InteropServices.Marshal.OffsetOf<KvmPS.Interop.msghdr>("msg_flags"));
        Assert.Equal(16, System.Runtime.CompilerServices.Unsafe.SizeOf<KvmPS.Interop.iovec>());
        Assert.Equal(16, System.Runtime.CompilerServices.Unsafe.SizeOf<KvmPS.Interop.cmsghdr>());
        Assert.Equal(24, KvmPS.Interop.Libc.CmsgSpaceForFds(2)); // CMSG_SPACE(8)
        Assert.Equal(20, KvmPS.Interop.Libc.CmsgLenForFds(1));   // CMSG_LEN(4)
    }

    [Fact]
    public void AMemfdTravelsOverAUnixSocketAndKeepsItsSizeAndSeals()
    {
        using var memfd = KvmPS.Interop.MemfdHandle.Create("kvmps-test", 1 << 20, hugetlb: false);
        Assert.True(memfd.SizeSealed);
        var (a, b) = Pair();
        using (a) using (b)
        {
            var fds = new List<KvmPS.Interop.MemfdHandle>();
            Assert.Equal(3, KvmPS.Interop.UnixFdPassing.Send(a, [1, 2, 3], [memfd]));
            var buffer = new byte[8];
            Assert.Equal(3, KvmPS.Interop.UnixFdPassing.Receive(b, buffer, fds));
            var received = Assert.Single(fds);
            using (received)
            {
                Assert.Equal(1 << 20, received.SizeBytes);
                Assert.True(received.SizeSealed);
            }
        }
    }

    private static (System.Net.Sockets.Socket, System.Net.Sockets.Socket) Pair()
    {
        string path = Path.Combine(Path.GetTempPath(), $"kvt-{Environment.ProcessId}-{Guid.NewGuid():N}"[..40] + ".sock");
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var a = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        a.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
        var b = listener.Accept();
        File.Delete(path);
        return (a, b);
    }

    [Theory]
    [InlineData("tcp:127.0.0.1:4444", "127.0.0.1", 4444, null)]
    [InlineData("tcp:[::1]:5", "::1", 5, null)]
    [InlineData("tcp::7000", "", 7000, null)]
    [InlineData("unix:/tmp/m.sock", null, 0, "/tmp/m.sock")]
    public void UrisParse(string uri, string? host, int port, string? path)
    {
        var e = MigrationEndpoint.Parse(uri);
        Assert.Equal((host, port, path), (e.Host, e.Port, e.UnixPath));
    }

    [Theory]
    [InlineData("http://x")]
    [InlineData("tcp:host")]
    [InlineData("tcp:host:0")]
    [InlineData("tcp:host:99999")]
    [InlineData("tcp:-oProxyCommand=x:22")]
    [InlineData("unix:")]
    public void BadUrisAreRefusedNamingThem(string uri) =>
        Assert.Contains(uri, Assert.Throws<ArgumentException>(() => MigrationEndpoint.Parse(uri)).Message);

    [Fact]
    public void IdentityDiffersOnShapeAndDevicesButNotOnPaths()
    {
        var a = new MachineConfig { MemoryBytes = 256UL << 20, KernelPath = "/a/vmlinuz" };
        Assert.Null(MachineIdentity.Compare(MachineIdentity.For(a), MachineIdentity.For(a with { KernelPath = "/b/vmlinuz", Cmdline = "x" })));
        string? memory = MachineIdentity.Compare(MachineIdentity.For(a), MachineIdentity.For(a with { MemoryBytes = 512UL << 20 }));
        Assert.Contains("memory_bytes 268435456", memory);
        Assert.Contains("memory_bytes 536870912", memory);
        string? devices = MachineIdentity.Compare(MachineIdentity.For(a), MachineIdentity.For(a with { Devices = [new KvmPS.Devices.Virtio.Rng.RngDeviceConfig()] }));
        Assert.Contains("device 00:01.0 rng", devices);
    }
}
