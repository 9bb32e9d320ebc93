using System.Net.Sockets;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Vsock;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vm;
using KvmPS.Vmm;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>virtio-vsock without KVM: configuration, the host socket's lifetime and errors, and a fuzzed tx queue.</summary>
public sealed class VirtioVsockTests : IDisposable
{
    private const ulong RamBytes = 16UL << 20;
    private readonly GuestMemory _mem = GuestMemory.Create(RamBytes);
    private readonly TempDir _dir = new();
    public void Dispose() { _mem.Dispose(); _dir.Dispose(); }

    private static VsockDeviceConfig Parse(string flag) => (VsockDeviceConfig)DeviceConfig.FromOptions(DeviceOptions.FromFlag(flag));

    [Fact]
    public void ConfigurationParses()
    {
        var c = Parse("vsock,guest_cid=3,uds_path=/run/v.sock");
        Assert.Equal(3UL, c.GuestCid);
        Assert.Equal("/run/v.sock", c.UdsPath);
        Assert.Contains("guest_cid", Assert.Throws<DeviceConfigException>(() => Parse("vsock,uds_path=/x")).Message);
        Assert.Contains("out of range", Assert.Throws<DeviceConfigException>(() => Parse("vsock,guest_cid=2,uds_path=/x")).Message);
        Assert.Contains("uds_path", Assert.Throws<DeviceConfigException>(() => Parse("vsock,guest_cid=3")).Message);
        Assert.Contains("'port'", Assert.Throws<DeviceConfigException>(() => Parse("vsock,guest_cid=3,uds_path=/x,port=1")).Message);
    }

    [Fact]
    public void HostSocketIsCreatedCheckedAndRemoved()
    {
        string path = _dir.File("v.sock");
        var dev = new VirtioVsock(_mem, 3, path);
        Assert.True(File.Exists(path));
        Assert.Equal(0, (int)File.GetUnixFileMode(path) & 0x3f); // no access for group/other
        var inUse = Assert.Throws<VmmResourceException>(() => new VirtioVsock(_mem, 4, path));
        Assert.Contains(path, inUse.Message);
        Assert.Contains("in use", inUse.Message);
        dev.Dispose();
        Assert.False(File.Exists(path));

        string missing = _dir.File("nope/v.sock");
        Assert.Contains(missing, Assert.Throws<VmmResourceException>(() => new VirtioVsock(_mem, 3, missing)).Message);
        string regular = _dir.File("file");
        File.WriteAllText(regular, "x");
        Assert.Contains("not a socket", Assert.Throws<VmmResourceException>(() => new VirtioVsock(_mem, 3, regular)).Message);

        // (A socket file left behind by a dead process is replaced; .NET unlinks its own sockets on dispose, so
        // that case cannot be staged from here.)
        using var again = new VirtioVsock(_mem, 3, path);
        Assert.True(File.Exists(path));
    }

    [Fact]
    public void ConfigSpaceHoldsTheGuestCid()
    {
        using var t = new VirtioPciTransport(new VirtioVsock(_mem, 0x8000_0005, _dir.File("c.sock")), _mem);
        var d = new TestDriver(t);
        Assert.Equal(VirtioVsock.FeatureStream, d.DeviceFeatures() & 0xFF);
        Assert.Equal(0x8000_0005UL, d.Read(VirtioPciTransport.DeviceCfgOffset, 4));
        Assert.Equal(0UL, d.Read(VirtioPciTransport.DeviceCfgOffset + 4, 4)); // upper half reserved (zero)
        Assert.Equal(0x8000_0005UL, d.Read(VirtioPciTransport.DeviceCfgOffset, 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => new VirtioVsock(_mem, 2, _dir.File("d.sock")));
    }

    private static void WriteHeader(GuestMemory mem, ulong at, VsockPacket p, uint len)
    {
        Span<byte> h = stackalloc byte[VirtioVsock.HeaderSize];
        p.DataLength = (int)Math.Min(len, int.MaxValue);
        p.WriteHeader(h);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(h[24..], len);
        mem.Write(at, h);
    }

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    public void RandomTxPacketsNeverEscape(int seed)
    {
        // A host listener on port 5000 (echo) so that some REQUESTs succeed and data flows; random headers, ops,
        // lengths and descriptors otherwise. The device must never fail internally ("device error"), only drop
        // packets, answer RST, or (for malformed rings) set NEEDS_RESET.
        var rng = new Random(seed);
        string path = _dir.File($"f{seed}.sock");
        using var echo = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        echo.Bind(new UnixDomainSocketEndPoint(path + "_5000"));
        echo.Listen(64);
        using var stopEcho = new CancellationTokenSource();
        var echoTask = Task.Run(async () =>
        {
            var open = new List<Socket>();
            try
            {
                while (true)
                {
                    var s = await echo.AcceptAsync(stopEcho.Token);
                    open.Add(s);
                    _ = Task.Run(async () =>
                    {
                        var b = new byte[4096];
                        try { int n; while ((n = await s.ReceiveAsync(b)) > 0) await s.SendAsync(b.AsMemory(0, n)); } catch { }
                    });
                }
            }
            catch { }
            finally { foreach (var s in open) s.Dispose(); }
        });

        int needsReset = 0;
        for (int iteration = 0; iteration < 60; iteration++)
        {
            var errors = new List<string>();
            var dev = new VirtioVsock(_mem, 3, path, errors.Add);
            using var t = new VirtioPciTransport(dev, _mem) { ErrorLog = errors.Add };
            var d = new TestDriver(t);
            d.Negotiate(VirtioVsock.FeatureStream | VirtioFeatures.RingEventIdx | VirtioFeatures.RingIndirectDesc);
            var rx = new TestRing(_mem, 16, 0x10000);
            var tx = new TestRing(_mem, 16, 0x11000);
            d.SetupQueue(0, rx);
            d.SetupQueue(1, tx);
            d.DriverOk();
            ushort rxAvail = 0;
            for (int i = 0; i < 16; i++) { rx.SetDesc(i, 0x40000 + 0x1000UL * (uint)i, (uint)(rng.Next(8) == 0 ? rng.Next(0, 60) : 4096), VirtQueue.DescFlagWrite); rx.Offer((ushort)i); rxAvail++; }
            d.Notify(0);
            ushort txUsedSeen = 0;
            for (int step = 0; step < 40 && (t.Status & VirtioStatus.NeedsReset) == 0; step++)
            {
                ulong buf = 0x20000 + 0x1000UL * (ulong)rng.Next(0, 16);
                uint len = rng.Next(4) switch { 0 => (uint)rng.NextInt64(0, uint.MaxValue), 1 => (uint)rng.Next(0, 200000), _ => (uint)rng.Next(0, 64) };
                var p = new VsockPacket
                {
                    SrcCid = rng.Next(8) == 0 ? (ulong)rng.NextInt64() : 3,
                    DstCid = rng.Next(8) == 0 ? (ulong)rng.Next(0, 5) : VirtioVsock.HostCid,
                    SrcPort = (uint)rng.Next(1000, 1004),
                    DstPort = rng.Next(3) == 0 ? (uint)rng.NextInt64(0, uint.MaxValue) : 5000u + (uint)rng.Next(0, 2),
                    Type = (ushort)(rng.Next(8) == 0 ? rng.Next(0, 4) : VirtioVsock.TypeStream),
                    Op = (ushort)(rng.Next(3) == 0 ? VirtioVsock.OpRw : rng.Next(0, 9)),
                    Flags = (uint)rng.Next(0, 4),
                    BufAlloc = rng.Next(4) == 0 ? (uint)rng.NextInt64(0, uint.MaxValue) : 65536,
                    FwdCnt = (uint)rng.Next(0, 100),
                };
                WriteHeader(_mem, buf, p, len);
                for (int k = 0; k < 16; k++) _mem.WriteUInt32(buf + 44 + 4UL * (uint)k, (uint)rng.Next());
                int shape = rng.Next(6);
                if (shape == 0) // header split over two descriptors
                {
                    uint first = (uint)rng.Next(1, 44);
                    tx.SetDesc(0, buf, first, VirtQueue.DescFlagNext, 1);
                    tx.SetDesc(1, buf + first, (uint)rng.Next(0, 200), 0);
                }
                else if (shape == 1) // garbage descriptor
                    tx.SetDesc(0, (ulong)rng.NextInt64(), (uint)rng.Next(), (ushort)rng.Next(0, 8), (ushort)rng.Next(0, 20));
                else
                    tx.SetDesc(0, buf, (uint)(44 + rng.Next(0, 4096)), (ushort)(rng.Next(10) == 0 ? VirtQueue.DescFlagWrite : 0));
                tx.Offer(0);
                d.Notify(1);
                if (tx.UsedIdx != txUsedSeen) txUsedSeen = tx.UsedIdx;
                if (rng.Next(4) == 0) Thread.Sleep(2); // let host I/O threads run
                // Recycle rx buffers the device used.
                while ((ushort)(rxAvail - rx.UsedIdx) < 8)
                {
                    var (id, _) = rx.UsedElem((ushort)(rxAvail - 16));
                    if (id < 16) rx.Offer((ushort)id);
                    rxAvail++;
                }
                d.Notify(0);
            }
            Thread.Sleep(5);
            bool broken = (t.Status & VirtioStatus.NeedsReset) != 0;
            if (broken) needsReset++;
            lock (errors) Assert.DoesNotContain(errors, e => e.Contains("device error") || e.Contains("Exception"));
            d.WriteStatus(0);
            Assert.Equal(0, dev.Host.ConnectionCount);
            t.Dispose();
            Assert.False(File.Exists(path), "the host socket must be removed on dispose");
        }
        stopEcho.Cancel();
        echo.Dispose();
        echoTask.Wait(TimeSpan.FromSeconds(5));
        Assert.True(needsReset > 0, "the fuzzer never reached a malformed ring");
    }
}
