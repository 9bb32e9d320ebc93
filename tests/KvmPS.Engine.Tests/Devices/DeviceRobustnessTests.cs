using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using KvmPS.Devices;
using KvmPS.Devices.Pci;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Balloon;
using KvmPS.Devices.Virtio.Net;
using KvmPS.Devices.Virtio.Rng;
using KvmPS.Devices.Virtio.Vsock;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>Regression tests for guest- and host-triggered robustness problems (unbounded buffering and logging, use after dispose, races).</summary>
public sealed class DeviceRobustnessTests : IDisposable
{
    private readonly GuestMemory _mem = GuestMemory.Create(16UL << 20);
    private readonly TempDir _dir = new();
    public void Dispose() { _mem.Dispose(); _dir.Dispose(); }

    // ---- rate-limited device logs ----

    [Fact]
    public void DeviceLogLetsABurstThroughThenOneLinePerIntervalWithASuppressedCount()
    {
        long now = 0;
        var lines = new List<string>();
        var log = new DeviceLog(lines.Add, "dev", burst: 20, interval: TimeSpan.FromSeconds(1), clock: () => now);
        for (int i = 0; i < 10_000; i++) log.Write($"event {i}");
        Assert.Equal(20, lines.Count);
        Assert.Equal(9_980, log.Suppressed);
        now += Stopwatch.Frequency; // one second: one more line, preceded by the count of what was dropped
        for (int i = 0; i < 10_000; i++) log.Write("again");
        Assert.Equal(22, lines.Count);
        Assert.Equal("dev: 9980 log messages suppressed (rate limit)", lines[20]);
        Assert.Equal("again", lines[21]);
        log.Flush();
        Assert.Equal("dev: 9999 log messages suppressed (rate limit)", lines[22]);
        log.Flush(); // nothing more to report
        Assert.Equal(23, lines.Count);
    }

    [Fact]
    public void TenThousandGuestTriggeredTransportErrorsGiveABoundedNumberOfLogLines()
    {
        var errors = new List<string>();
        using var t = new VirtioPciTransport(new VirtioRng(), _mem) { ErrorLog = errors.Add };
        var drv = new TestDriver(t);
        for (int i = 0; i < 10_000; i++)
        {
            // reset → a queue outside RAM (Fail: "device needs reset"), and a refused feature negotiation
            Assert.True(drv.Negotiate(0));
            drv.SetupQueue(0, new TestRing(_mem, 8, 0xFFFF_0000));
            Assert.False(drv.Negotiate(1UL << 40));
        }
        Assert.InRange(errors.Count, DeviceLog.DefaultBurst, DeviceLog.DefaultBurst + 30); // the run takes a few seconds at most
        Assert.Contains(errors, e => e.Contains("outside guest RAM"));
        Assert.Contains(errors, e => e.Contains("feature negotiation refused"));
    }

    [Fact]
    public void BalloonOversizedChainsAreRateLimited()
    {
        var errors = new List<string>();
        var b = new VirtioBalloon(_mem, log: m => { lock (errors) errors.Add(m); });
        using var t = new VirtioPciTransport(b, _mem) { ErrorLog = errors.Add };
        var d = new TestDriver(t);
        Assert.True(d.Negotiate(VirtioBalloon.FeatureStatsVq));
        var ring = new TestRing(_mem, 16, 0x10000);
        d.SetupQueue(0, ring);
        d.DriverOk();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 200; i++)
        {
            ring.SetDesc(0, 0x100000, (uint)VirtioBalloon.MaxPfnBytesPerChain + 4096, 0); // a 1 MiB + 4 KiB PFN buffer
            ring.Offer(0);
            d.Notify(0);
        }
        Assert.Equal(200, ring.UsedIdx);
        // The limiter's contract: a burst, then one line per interval (the loop takes seconds on a loaded host).
        int allowed = DeviceLog.DefaultBurst + (int)Math.Ceiling(clock.Elapsed / DeviceLog.DefaultInterval) + 1;
        lock (errors) Assert.InRange(errors.Count(e => e.Contains("only the first")), 1, allowed);
    }

    // ---- nothing after Dispose ----

    private sealed class CountingDevice : IVirtioDevice
    {
        public int Processed;
        public string Name => "counting";
        public ushort DeviceType => 4;
        public uint PciClassCode => 0x00FF00;
        public int QueueCount => 1;
        public ushort MaxQueueSize(int queue) => 8;
        public ulong DeviceFeatures => 0;
        public int ConfigSize => 0;
        public void ReadConfig(int offset, Span<byte> data) { }
        public void WriteConfig(int offset, ReadOnlySpan<byte> data) { }
        public void Activate(IVirtioContext context) { }
        public void Reset() { }
        public void ProcessQueue(IVirtioContext context, int queue)
        {
            Processed++;
            var q = context.Queue(queue)!;
            var chain = new DescriptorChain();
            while (q.Pop(chain) == PopResult.Chain) q.PushUsed(chain.Head, 0);
            context.NotifyUsed(queue);
        }
        public void Dispose() { }
    }

    [Fact]
    public void ADisposedTransportNeverWalksTheRingsAgain()
    {
        var mem = GuestMemory.Create(16UL << 20);
        var errors = new List<string>();
        var dev = new CountingDevice();
        var t = new VirtioPciTransport(dev, mem) { ErrorLog = errors.Add };
        var drv = new TestDriver(t);
        Assert.True(drv.Negotiate(0));
        var ring = new TestRing(mem, 8, 0x1000);
        drv.SetupQueue(0, ring);
        drv.DriverOk();
        ring.SetDesc(0, 0x20000, 16, VirtQueue.DescFlagWrite);
        ring.Offer(0);
        t.HandleNotify(0);
        Assert.Equal(1, dev.Processed);
        Assert.Equal(1, ring.UsedIdx);

        t.Dispose();
        Assert.True(t.IsDisposed);
        mem.Dispose(); // the VM tears guest memory down after the devices
        t.HandleNotify(0);   // a late ioeventfd / pool-thread kick
        drv.Notify(0);       // a late MMIO notify
        drv.DriverOk();      // no re-activation either
        t.HandleNotify(0);
        Assert.Equal(1, dev.Processed);
        Assert.Empty(errors);
        Assert.Equal(0, t.Status);
        t.Dispose(); // twice is harmless
    }

    [Fact]
    public void BalloonAndVsockHostSideKicksAfterDisposeDoNothing()
    {
        var mem = GuestMemory.Create(16UL << 20);
        var errors = new List<string>();
        var b = new VirtioBalloon(mem, statsIntervalSeconds: 1, log: m => { lock (errors) errors.Add(m); });
        var tb = new VirtioPciTransport(b, mem) { ErrorLog = m => { lock (errors) errors.Add(m); } };
        var v = new VirtioVsock(mem, 3, _dir.File("k.sock"), m => { lock (errors) errors.Add(m); });
        var tv = new VirtioPciTransport(v, mem) { ErrorLog = m => { lock (errors) errors.Add(m); } };
        foreach (var (t, ok) in new[] { (tb, VirtioBalloon.FeatureStatsVq), (tv, VirtioVsock.FeatureStream) })
        {
            var d = new TestDriver(t);
            Assert.True(d.Negotiate(ok));
            for (ushort q = 0; q < 3; q++) d.SetupQueue(q, new TestRing(mem, 8, 0x10000 + 0x1000UL * q));
            d.DriverOk();
        }
        var sw = Stopwatch.StartNew();
        tb.Dispose(); // waits for a stats-timer callback in flight, if any
        tv.Dispose();
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5));
        mem.Dispose();
        b.SetTarget(0);      // balloon.set through a stale machine reference
        b.RequestStats();    // the stats timer path
        v.Kick();            // a host I/O continuation
        Thread.Sleep(1500);  // a stats period: the disposed timer must not fire
        lock (errors) Assert.DoesNotContain(errors, e => e.Contains("Exception") || e.Contains("queue"));
    }

    [Fact]
    public void MsiXTableCreatesNoRoutesAfterDispose()
    {
        var msi = new FakeMsi();
        var table = new MsiXTable(2, msi);
        table.SetControl(enabled: true, functionMasked: false);
        Span<byte> entry = stackalloc byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(entry, 0xFEE0_0000);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[8..], 0x41);
        table.TableWrite(0, entry); // vector 0, unmasked
        Assert.True(table.Notify(0));
        Assert.Equal(1, msi.Routes);
        Assert.Single(msi.Fired);
        table.Dispose();
        Assert.True(table.Notify(0));
        table.SetControl(enabled: true, functionMasked: false); // refresh delivers pending vectors
        Assert.Equal(1, msi.Routes);
        Assert.Single(msi.Fired);
    }

    // ---- MSI routing: one lock across table building and the commit ----

    [Fact]
    public void ConcurrentMsiRouteUpdatesEndWithEveryRouteCommitted()
    {
        kvm_irq_routing_entry[]? committed = null;
        var log = new List<string>();
        var newest = new Dictionary<uint, uint>(); // per GSI: the data of the last committed table (only grows here)
        int regressions = 0;
        var router = new KvmMsiRouter(table =>
        {
            for (int i = 0; i < 3; i++) Thread.Yield(); // widen the window between building a table and KVM having it
            lock (newest)
            {
                // KVM replaces the whole table: a table built before another thread's update must never land after it.
                foreach (var (gsi, data) in newest)
                    if (!table.Any(e => e.type == KvmConstants.KVM_IRQ_ROUTING_MSI && e.gsi == gsi && e.msi_data >= data)) regressions++;
                foreach (var e in table.Where(e => e.type == KvmConstants.KVM_IRQ_ROUTING_MSI)) newest[e.gsi] = e.msi_data;
                committed = table;
            }
        }, (_, _, _) => { }, m => { lock (log) log.Add(m); });
        const int Threads = 8, Updates = 200;
        var routes = new IMsiRoute[Threads];
        for (int i = 0; i < Threads; i++) routes[i] = router.CreateRoute();
        using var go = new Barrier(Threads);
        var workers = Enumerable.Range(0, Threads).Select(i => new Thread(() =>
        {
            go.SignalAndWait();
            for (int u = 1; u <= Updates; u++) routes[i].Configure(0xFEE0_0000, (uint)(i * 1000 + u));
        })).ToArray();
        foreach (var w in workers) w.Start();
        foreach (var w in workers) w.Join();
        Assert.Empty(log);
        Assert.Equal(0, regressions);
        Assert.NotNull(committed);
        for (int i = 0; i < Threads; i++)
            Assert.Contains(committed, e => e.type == KvmConstants.KVM_IRQ_ROUTING_MSI && e.gsi == KvmMsiRouter.FirstMsiGsi + (uint)i && e.msi_data == (uint)(i * 1000 + Updates));
        lock (newest) newest.Clear();
        foreach (var r in routes) r.Dispose();
        Assert.Equal(KvmMsiRouter.IrqchipRoutes().Count, committed!.Length);
    }

    [Fact]
    public void AFailedMsiCommitLeavesNoStaleEntry()
    {
        kvm_irq_routing_entry[]? committed = null;
        var log = new List<string>();
        var router = new KvmMsiRouter(table =>
        {
            if (table.Any(e => e.type == KvmConstants.KVM_IRQ_ROUTING_MSI && e.msi_data == 0xBAD)) throw new InvalidOperationException("EINVAL");
            committed = table;
        }, (_, _, _) => { }, log.Add);
        using var bad = router.CreateRoute();
        using var good = router.CreateRoute();
        bad.Configure(0xFEE0_0000, 0xBAD);
        Assert.Contains(log, l => l.Contains("KVM_SET_GSI_ROUTING failed"));
        Assert.DoesNotContain(router.BuildTable(), e => e.type == KvmConstants.KVM_IRQ_ROUTING_MSI);
        good.Configure(0xFEE0_0000, 0x42); // must not be refused because of the other route's bad entry
        Assert.Single(log);
        Assert.Single(committed!, e => e.type == KvmConstants.KVM_IRQ_ROUTING_MSI && e.msi_data == 0x42);
    }

    // ---- vsock: a guest that never reads cannot make the VMM buffer without bound ----

    private static void WriteVsockHeader(GuestMemory mem, ulong at, VsockPacket p)
    {
        Span<byte> h = stackalloc byte[VirtioVsock.HeaderSize];
        p.WriteHeader(h);
        mem.Write(at, h);
    }

    [Fact]
    public async Task VsockBuffersLittleForAGuestThatAdvertisesHugeCreditButPostsNoRxBuffers()
    {
        string path = _dir.File("flood.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path + "_5000"));
        listener.Listen(4);
        using var stop = new CancellationTokenSource();
        long sent = 0;
        var streamer = Task.Run(async () =>
        {
            using var s = await listener.AcceptAsync(stop.Token);
            var chunk = new byte[64 * 1024];
            try { while (sent < 16L << 20) sent += await s.SendAsync(chunk, SocketFlags.None, stop.Token); }
            catch (OperationCanceledException) { }
            catch (SocketException) { }
        });

        var errors = new List<string>();
        var dev = new VirtioVsock(_mem, 3, path, m => { lock (errors) errors.Add(m); });
        using var t = new VirtioPciTransport(dev, _mem) { ErrorLog = m => { lock (errors) errors.Add(m); } };
        var d = new TestDriver(t);
        Assert.True(d.Negotiate(VirtioVsock.FeatureStream));
        var rx = new TestRing(_mem, 16, 0x10000);
        var tx = new TestRing(_mem, 16, 0x11000);
        d.SetupQueue(0, rx);
        d.SetupQueue(1, tx);
        d.DriverOk();
        // REQUEST 3:1000 → 2:5000 with buf_alloc 4 GiB − 1, and no rx buffers at all.
        WriteVsockHeader(_mem, 0x20000, new VsockPacket { SrcCid = 3, DstCid = VirtioVsock.HostCid, SrcPort = 1000, DstPort = 5000, Op = VirtioVsock.OpRequest, BufAlloc = uint.MaxValue });
        tx.SetDesc(0, 0x20000, VirtioVsock.HeaderSize, 0);
        tx.Offer(0);
        d.Notify(1);

        var deadline = Stopwatch.StartNew();
        while (dev.PendingDataBytes < VirtioVsock.MaxUndeliveredPerConnection && deadline.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(10);
        Thread.Sleep(500); // the host keeps streaming; the device must not keep reading
        Assert.Equal(1, dev.Host.ConnectionCount);
        Assert.InRange(dev.PendingDataBytes, 1, VirtioVsock.MaxUndeliveredPerConnection);
        Assert.True(Interlocked.Read(ref sent) < 16L << 20, "the host peer was never held back");

        // Once the guest supplies rx buffers, data flows again (delivery wakes the reader).
        long delivered = 0;
        ushort seen = 0;
        for (int i = 0; i < 16; i++) { rx.SetDesc(i, 0x40000 + 0x1000UL * (uint)i, 4096, VirtQueue.DescFlagWrite); rx.Offer((ushort)i); }
        d.Notify(0);
        deadline.Restart();
        while (delivered < 2 * VirtioVsock.MaxUndeliveredPerConnection && deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            while (seen != rx.UsedIdx)
            {
                var (id, _) = rx.UsedElem(seen);
                ulong buf = 0x40000 + 0x1000UL * id;
                if (_mem.ReadUInt16(buf + 30) == VirtioVsock.OpRw) delivered += _mem.ReadUInt32(buf + 24);
                rx.Offer((ushort)id);
                seen++;
            }
            d.Notify(0);
            Thread.Sleep(2);
        }
        Assert.True(delivered >= 2 * VirtioVsock.MaxUndeliveredPerConnection, $"only {delivered} bytes reached the guest");
        Assert.InRange(dev.PendingDataBytes, 0, VirtioVsock.MaxUndeliveredPerConnection);
        stop.Cancel();
        d.WriteStatus(0);
        await streamer.WaitAsync(TimeSpan.FromSeconds(5));
        lock (errors) Assert.DoesNotContain(errors, e => e.Contains("device error"));
    }

    // ---- tap: a read error stops receiving instead of spinning ----

    [Fact]
    public void ATapThatFailsToReadStopsReceivingInsteadOfSpinning()
    {
        // Needs root and /dev/net/tun (creates a short-lived tap, then deletes it under the open fd); passes trivially otherwise.
        if (Libc.GetEuid() != 0 || !File.Exists("/dev/net/tun") || NetNs.FindTool("ip") is not { } ip) return;
        string name = "kvrx" + Convert.ToHexString(Guid.NewGuid().ToByteArray()[..4]).ToLowerInvariant();
        TapDevice tap;
        try { tap = TapDevice.Open(name, null, null); }
        catch (TapSetupException) { return; } // no CAP_NET_ADMIN in this namespace after all
        using var _ = tap;
        var logs = new List<string>();
        tap.Log = m => { lock (logs) logs.Add(m); };
        int ready = 0;
        var buf = new byte[65536];
        tap.ReceiveReady = () =>
        {
            Interlocked.Increment(ref ready);
            while (tap.Receive(buf) > 0) { } // as VirtioNet.ProcessRx: drain, then re-arm
            tap.ArmReceive();
        };
        tap.ArmReceive();
        var del = Process.Start(ip, ["link", "del", name]);
        Assert.True(del.WaitForExit(10_000));
        Assert.Equal(0, del.ExitCode);
        var deadline = Stopwatch.StartNew();
        while (tap.RxError == 0 && deadline.Elapsed < TimeSpan.FromSeconds(5)) Thread.Sleep(10);
        Assert.NotEqual(0, tap.RxError);
        int after = Volatile.Read(ref ready);
        Thread.Sleep(300);
        Assert.InRange(Volatile.Read(ref ready) - after, 0, 1); // no busy loop
        lock (logs) Assert.Single(logs, l => l.Contains("receiving stopped"));
    }
}
