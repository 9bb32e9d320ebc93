using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Vsock;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>
/// The vsock host thread without KVM: a test driver plays the guest (rx/tx rings in guest memory), real Unix sockets
/// play the host. Credit both ways, pause, and connects to a busy host listener.
/// </summary>
public sealed class VirtioVsockHostTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly GuestMemory _mem = GuestMemory.Create(16UL << 20);
    private readonly TempDir _dir = new();
    public void Dispose() { _mem.Dispose(); _dir.Dispose(); }

    /// <summary>The guest's side of the device: tx packets written by the test, rx packets collected from the used ring.</summary>
    private sealed class Guest : IDisposable
    {
        private const ulong TxBuffers = 0x20000, RxBuffers = 0x40000;
        private const int RingSize = 16;
        private readonly GuestMemory _mem;
        private readonly TestRing _rx, _tx;
        private readonly TestDriver _driver;
        private ushort _txSlot, _rxSeen;
        public readonly List<string> Errors = new();
        public readonly VirtioVsock Device;
        public readonly VirtioPciTransport Transport;
        public readonly List<(VsockPacket Header, byte[] Data)> Received = new();

        public Guest(GuestMemory mem, string udsPath)
        {
            _mem = mem;
            Device = new VirtioVsock(mem, 3, udsPath, m => { lock (Errors) Errors.Add(m); });
            Transport = new VirtioPciTransport(Device, mem) { ErrorLog = m => { lock (Errors) Errors.Add(m); } };
            _driver = new TestDriver(Transport);
            Assert.True(_driver.Negotiate(VirtioVsock.FeatureStream));
            _rx = new TestRing(mem, RingSize, 0x10000);
            _tx = new TestRing(mem, RingSize, 0x11000);
            _driver.SetupQueue(VirtioVsock.RxQueue, _rx);
            _driver.SetupQueue(VirtioVsock.TxQueue, _tx);
            _driver.DriverOk();
        }

        public void PostRxBuffers()
        {
            for (int i = 0; i < RingSize; i++) { _rx.SetDesc(i, RxBuffers + 0x1000UL * (uint)i, 4096, VirtQueue.DescFlagWrite); _rx.Offer((ushort)i); }
            _driver.Notify(VirtioVsock.RxQueue);
        }

        public void Send(ushort op, uint srcPort, uint dstPort, uint bufAlloc, uint fwdCnt, ReadOnlySpan<byte> data = default, uint flags = 0)
        {
            ulong at = TxBuffers + 0x1000UL * _txSlot;
            var p = new VsockPacket { SrcCid = 3, DstCid = VirtioVsock.HostCid, SrcPort = srcPort, DstPort = dstPort, Op = op, BufAlloc = bufAlloc, FwdCnt = fwdCnt, Flags = flags, DataLength = data.Length };
            Span<byte> h = stackalloc byte[VirtioVsock.HeaderSize];
            p.WriteHeader(h);
            _mem.Write(at, h);
            _mem.Write(at + VirtioVsock.HeaderSize, data);
            _tx.SetDesc(_txSlot, at, (uint)(VirtioVsock.HeaderSize + data.Length), 0);
            _tx.Offer(_txSlot);
            _txSlot = (ushort)((_txSlot + 1) % RingSize);
            _driver.Notify(VirtioVsock.TxQueue);
        }

        /// <summary>Takes what the device put in rx buffers and gives the buffers back.</summary>
        public void Collect()
        {
            bool any = false;
            while (_rxSeen != _rx.UsedIdx)
            {
                var (id, _) = _rx.UsedElem(_rxSeen);
                ulong buf = RxBuffers + 0x1000UL * id;
                var header = new byte[VirtioVsock.HeaderSize];
                _mem.Read(buf, header);
                var p = VsockPacket.ReadHeader(header, out uint len);
                var data = new byte[len];
                _mem.Read(buf + VirtioVsock.HeaderSize, data);
                lock (Received) Received.Add((p, data));
                _rx.Offer((ushort)id);
                _rxSeen++;
                any = true;
            }
            if (any) _driver.Notify(VirtioVsock.RxQueue);
        }

        public long DataBytes(uint port) { lock (Received) return Received.Where(r => r.Header.Op == VirtioVsock.OpRw && r.Header.SrcPort == port).Sum(r => (long)r.Data.Length); }
        public bool Has(ushort op, uint dstPort) { lock (Received) return Received.Any(r => r.Header.Op == op && r.Header.DstPort == dstPort); }
        public byte[] Data(uint port) { lock (Received) return Received.Where(r => r.Header.Op == VirtioVsock.OpRw && r.Header.SrcPort == port).SelectMany(r => r.Data).ToArray(); }

        public bool WaitUntil(Func<bool> condition, TimeSpan timeout)
        {
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < timeout)
            {
                Collect();
                if (condition()) return true;
                Thread.Sleep(5);
            }
            Collect();
            return condition();
        }

        public void Dispose() => Transport.Dispose();
    }

    private static Socket Listen(string path, int backlog = 4)
    {
        var l = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        l.Bind(new UnixDomainSocketEndPoint(path));
        l.Listen(backlog);
        return l;
    }

    private static byte[] Pattern(int length, int seed) => Enumerable.Range(0, length).Select(i => (byte)(i * 7 + seed + (i >> 8))).ToArray();

    [Fact]
    public void AHostStreamIsReadOnlyAsFarAsTheGuestsCreditAllowsAndGuestDataReachesTheHost()
    {
        string path = _dir.File("c.sock");
        using var listener = Listen(path + "_5000");
        using var guest = new Guest(_mem, path);
        guest.PostRxBuffers();
        const uint GuestPort = 1000, HostPort = 5000, Credit = 1000;
        guest.Send(VirtioVsock.OpRequest, GuestPort, HostPort, bufAlloc: Credit, fwdCnt: 0);
        using var peer = listener.Accept();
        Assert.True(guest.WaitUntil(() => guest.Has(VirtioVsock.OpResponse, GuestPort), Timeout), "no RESPONSE");

        // The host writes 1 MiB; the guest has granted 1000 bytes.
        var stream = Pattern(1 << 20, 3);
        long written = 0;
        var writer = new Thread(() =>
        {
            try { while (written < stream.Length) written += peer.Send(stream.AsSpan((int)written, Math.Min(65536, stream.Length - (int)written))); }
            catch (SocketException) { } catch (ObjectDisposedException) { }
        }) { IsBackground = true };
        writer.Start();
        Assert.True(guest.WaitUntil(() => guest.DataBytes(HostPort) >= Credit, Timeout), $"{guest.DataBytes(HostPort)} bytes arrived");
        Thread.Sleep(300);
        guest.Collect();
        Assert.Equal(Credit, guest.DataBytes(HostPort)); // never read beyond credit
        Assert.Equal(0, guest.Device.PendingDataBytes);

        // The guest consumes and grants more, step by step: each grant lets exactly that much through.
        uint fwd = Credit;
        for (int round = 0; round < 3; round++)
        {
            guest.Send(VirtioVsock.OpCreditUpdate, GuestPort, HostPort, bufAlloc: Credit, fwdCnt: fwd);
            fwd += Credit;
            Assert.True(guest.WaitUntil(() => guest.DataBytes(HostPort) >= fwd, Timeout), $"round {round}: {guest.DataBytes(HostPort)} bytes arrived");
            Thread.Sleep(100);
            guest.Collect();
            Assert.Equal(fwd, guest.DataBytes(HostPort));
        }
        // Then a large window: the rest of the megabyte streams through, in order.
        guest.Send(VirtioVsock.OpCreditUpdate, GuestPort, HostPort, bufAlloc: uint.MaxValue, fwdCnt: fwd);
        uint consumed = fwd;
        var sw = Stopwatch.StartNew();
        while (guest.DataBytes(HostPort) < stream.Length && sw.Elapsed < TimeSpan.FromSeconds(30))
        {
            guest.Collect();
            uint now = (uint)guest.DataBytes(HostPort);
            if (now - consumed >= 64 * 1024) { consumed = now; guest.Send(VirtioVsock.OpCreditUpdate, GuestPort, HostPort, bufAlloc: uint.MaxValue, fwdCnt: consumed); }
            Thread.Sleep(1);
        }
        Assert.Equal(stream, guest.Data(HostPort));

        // Guest → host: three RW packets arrive in order; once written, fwd_cnt reaches the guest in a CREDIT_UPDATE.
        var up = Pattern(3000, 11);
        for (int i = 0; i < 3; i++) guest.Send(VirtioVsock.OpRw, GuestPort, HostPort, bufAlloc: uint.MaxValue, fwdCnt: consumed, up.AsSpan(i * 1000, 1000));
        var got = new byte[up.Length];
        int n = 0;
        peer.ReceiveTimeout = 10_000;
        while (n < got.Length) n += peer.Receive(got.AsSpan(n));
        Assert.Equal(up, got);
        Assert.True(guest.WaitUntil(() => { lock (guest.Received) return guest.Received.Any(r => r.Header.Op == VirtioVsock.OpCreditUpdate && r.Header.FwdCnt == 3000); }, Timeout));
        lock (guest.Errors) Assert.Empty(guest.Errors);
    }

    [Fact]
    public void APausedDeviceReadsNoHostSocketAndAcceptsNoClientUntilResumed()
    {
        string path = _dir.File("p.sock");
        using var listener = Listen(path + "_6000");
        using var guest = new Guest(_mem, path);
        const uint GuestPort = 1001, HostPort = 6000;
        guest.Send(VirtioVsock.OpRequest, GuestPort, HostPort, bufAlloc: 65536, fwdCnt: 0);
        using var peer = listener.Accept();
        Assert.True(SpinWait.SpinUntil(() => guest.Device.Host.ConnectionCount == 1, Timeout));

        guest.Transport.Pause(); // as snapshot.create does: the transport, then the device
        Assert.True(guest.Device.Host.IsParked);
        peer.Send(Pattern(100, 1));
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        client.Send("CONNECT 77\n"u8);
        Thread.Sleep(300);
        Assert.Equal(0, guest.Device.PendingDataBytes); // the host socket was not read
        Assert.Equal(1, guest.Device.Host.ConnectionCount); // the client's request was not taken

        guest.Transport.Resume();
        Assert.True(SpinWait.SpinUntil(() => guest.Device.PendingDataBytes == 100 && guest.Device.Host.ConnectionCount == 2, Timeout),
            $"pending {guest.Device.PendingDataBytes}, connections {guest.Device.Host.ConnectionCount}");
        guest.PostRxBuffers();
        Assert.True(guest.WaitUntil(() => guest.DataBytes(HostPort) == 100 && guest.Has(VirtioVsock.OpRequest, 77), Timeout));
    }

    [Fact]
    public void AGuestConnectToAHostListenerWithAFullBacklogIsRetriedUntilItAccepts()
    {
        string path = _dir.File("b.sock");
        using var listener = Listen(path + "_7000", backlog: 1);
        var fillers = new List<Socket>();
        try
        {
            // Fill the listener's backlog: a further non-blocking connect gets EAGAIN.
            while (true)
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { Blocking = false };
                fillers.Add(s);
                try { s.Connect(new UnixDomainSocketEndPoint(path + "_7000")); }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock) { break; }
                Assert.True(fillers.Count < 64, "the backlog never filled");
            }
            using var guest = new Guest(_mem, path);
            guest.PostRxBuffers();
            const uint GuestPort = 1002, HostPort = 7000;
            guest.Send(VirtioVsock.OpRequest, GuestPort, HostPort, bufAlloc: 65536, fwdCnt: 0);
            Thread.Sleep(300);
            guest.Collect();
            Assert.False(guest.Has(VirtioVsock.OpRst, GuestPort), "refused while the listener was only busy");
            Assert.False(guest.Has(VirtioVsock.OpResponse, GuestPort));

            // The fillers that got in (all but the last) are accepted: the device's next attempt finds room.
            var accepted = new List<Socket>();
            for (int i = 0; i < fillers.Count - 1; i++) accepted.Add(listener.Accept());
            Assert.True(guest.WaitUntil(() => guest.Has(VirtioVsock.OpResponse, GuestPort), Timeout), "no RESPONSE once the listener accepted");
            Assert.False(guest.Has(VirtioVsock.OpRst, GuestPort));
            accepted.Add(listener.Accept()); // the device's connection
            foreach (var a in accepted) a.Dispose();
        }
        finally
        {
            foreach (var s in fillers) s.Dispose();
        }
    }

    [Fact]
    public void AHostClientWhoseRequestTheGuestNeverAnswersIsClosedAfterTheConnectTimeout()
    {
        string path = _dir.File("t.sock");
        using var guest = new Guest(_mem, path);
        guest.PostRxBuffers();
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        var sw = Stopwatch.StartNew();
        client.Send("CONNECT 88\n"u8);
        Assert.True(guest.WaitUntil(() => guest.Has(VirtioVsock.OpRequest, 88), Timeout));
        client.ReceiveTimeout = 15_000;
        var b = new byte[16];
        int n;
        try { n = client.Receive(b); } catch (SocketException) { n = -1; } // EOF (0) or reset: no OK line either way
        Assert.True(n <= 0, $"got '{Encoding.ASCII.GetString(b, 0, Math.Max(0, n))}'");
        Assert.InRange(sw.Elapsed, VsockHost.ConnectTimeout - TimeSpan.FromMilliseconds(100), VsockHost.ConnectTimeout + TimeSpan.FromSeconds(3));
        Assert.True(guest.WaitUntil(() => guest.Has(VirtioVsock.OpRst, 88), Timeout), "the guest was not told with RST");
        Assert.Equal(0, guest.Device.Host.ConnectionCount);
    }
}
