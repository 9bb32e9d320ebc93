using System.Buffers.Binary;
using KvmPS.Devices;
using KvmPS.Devices.Pci;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Balloon;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Virtio.Net;
using KvmPS.Devices.Virtio.Rng;
using KvmPS.Devices.Virtio.Vsock;
using KvmPS.Engine.Tests.Support;
using KvmPS.State;
using KvmPS.Storage;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices.State;

/// <summary>
/// The virtio stack's records — PCI function (config space, BARs, MSI-X), transport, each queue, the device —
/// saved from a driven device and restored into a freshly built one: byte-identical, and the restored device goes
/// on where the first one stopped.
/// </summary>
public sealed class VirtioStateTests : IDisposable
{
    private const int Slot = 3;
    private readonly GuestMemory _mem = GuestMemory.Create(16UL << 20);
    private readonly TempDir _dir = new();
    public void Dispose() { _mem.Dispose(); _dir.Dispose(); }

    private (PciBus Bus, VirtioPciTransport T) Build(IVirtioDevice device, IMsiController? msi = null)
    {
        var bus = new PciBus(new MmioBus(), VirtioPciTransportTests.TestWindows, _ => new FakeLine());
        var t = new VirtioPciTransport(device, _mem, msi);
        bus.AddDevice(Slot, t);
        return (bus, t);
    }

    /// <summary>Round-trips every record of <paramref name="source"/> into <paramref name="fresh"/> (in restore order) and returns the names.</summary>
    private static string[] RoundTripAll(VirtioPciTransport source, VirtioPciTransport fresh)
    {
        source.Pause();
        var from = source.PersistentParts().ToArray();
        var to = fresh.PersistentParts().ToArray();
        Assert.Equal(from.Select(p => p.StateName), to.Select(p => p.StateName));
        for (int i = 0; i < from.Length; i++) StateAssert.RoundTrips(from[i], to[i]);
        return from.Select(p => p.StateName).ToArray();
    }

    private static void FillWritable(TestRing ring, int index, ulong address, uint length)
    {
        ring.SetDesc(index, address, length, VirtQueue.DescFlagWrite);
        ring.Offer((ushort)index);
    }

    [Fact]
    public void RestoredQueueContinuesAtTheSavedIndices()
    {
        var (_, t) = Build(new VirtioRng());
        var drv = new TestDriver(t);
        Assert.True(drv.Negotiate(VirtioFeatures.RingEventIdx));
        var ring = new TestRing(_mem, 8, 0x10000);
        drv.SetupQueue(0, ring);
        drv.DriverOk();
        FillWritable(ring, 0, 0x40000, 16);
        FillWritable(ring, 1, 0x40100, 16);
        drv.Notify(0);
        Assert.Equal(2, ring.UsedIdx);
        FillWritable(ring, 2, 0x40200, 16); // posted before the snapshot, not yet notified

        var (_, t2) = Build(new VirtioRng());
        var names = RoundTripAll(t, t2);
        Assert.Equal(["pci/00:03.0", "pci/00:03.0/virtio", "pci/00:03.0/queue0", "pci/00:03.0/device"], names);
        Assert.True(t2.IsPaused);
        var drv2 = new TestDriver(t2);
        drv2.Notify(0);
        Assert.Equal(2, ring.UsedIdx); // paused after restore: nothing touches the rings
        t2.Resume();
        Assert.Equal(3, ring.UsedIdx); // the deferred notification ran: buffer 2, not buffer 0 again
        Assert.Equal((2u, 16u), ring.UsedElem(2));
        Assert.Equal(VirtioStatus.Acknowledge | VirtioStatus.Driver | VirtioStatus.FeaturesOk | VirtioStatus.DriverOk, drv2.Status);
        FillWritable(ring, 3, 0x40300, 16);
        drv2.Notify(0);
        Assert.Equal(4, ring.UsedIdx);
        Assert.Equal((3u, 16u), ring.UsedElem(3));
        Assert.Equal(48UL + 16UL, ((VirtioRng)t2.Device).BytesServed);
    }

    [Fact]
    public void EveryRecordOfTheStackRefusesDamage()
    {
        var (_, t) = Build(new VirtioRng());
        var drv = new TestDriver(t);
        drv.Negotiate(0);
        drv.SetupQueue(0, new TestRing(_mem, 8, 0x10000));
        drv.DriverOk();
        var parts = t.PersistentParts().ToArray();
        for (int i = 0; i < parts.Length; i++)
        {
            int k = i;
            StateAssert.RejectsDamagedRecords(parts[k], () => Build(new VirtioRng()).T.PersistentParts().ElementAt(k));
        }
    }

    [Fact]
    public void PciRecordCarriesBarsCommandAndMsiXAndRefusesAnotherDevice()
    {
        var msi = new FakeMsi();
        var (_, t) = Build(new VirtioRng(), msi);
        int cap = 0x40;
        Span<byte> b = stackalloc byte[2];
        while (true) { t.ConfigRead(cap, b); if (b[0] == PciDevice.CapIdMsiX) break; cap = b[1]; }
        t.ConfigWrite(cap + 2, [0x00, 0x80]); // MSI-X on
        var drv = new TestDriver(t);
        ulong entry = VirtioPciTransport.MsixTableOffset + 16;
        drv.Write(entry, 4, 0xFEE0_0000);
        drv.Write(entry + 8, 4, 0x41);
        drv.Write(entry + 12, 4, 0);
        t.ConfigWrite(0x10, [0x00, 0x00, 0x00, 0xD0]); // move BAR0
        ulong bar = t.Bar(0)!.Address;

        var msi2 = new FakeMsi();
        var (_, t2) = Build(new VirtioRng(), msi2);
        StateAssert.RoundTrips(t, t2);
        Assert.Equal(bar, t2.Bar(0)!.Address);
        Assert.Equal(bar, t2.Bar(0)!.MappedAt);
        Assert.True(t2.MsiX.Enabled);
        Assert.Equal(0xFEE0_0000UL, t2.MsiX.Address(1));
        Assert.False(t2.MsiX.IsMasked(1));
        Assert.Empty(msi2.Fired); // restoring delivers nothing

        var (_, other) = Build(new VirtioBlock(new MemoryBackend(8)));
        var e = Assert.Throws<StateFormatException>(() => DeviceState.Restore(other, DeviceState.Save(t), PciDeviceState.Version));
        Assert.Equal("pci/00:03.0", e.RecordName);
    }

    private static void BlockRequest(GuestMemory mem, TestRing ring, int first, uint type, ulong sector, ulong buffer)
    {
        ulong header = 0x50000 + (ulong)first * 0x100;
        mem.WriteUInt32(header, type);
        mem.WriteUInt64(header + 8, sector);
        ring.SetDesc(first, header, 16, VirtQueue.DescFlagNext, (ushort)(first + 1));
        ring.SetDesc(first + 1, buffer, 512, (ushort)(VirtQueue.DescFlagNext | (type == VirtioBlock.TypeIn ? VirtQueue.DescFlagWrite : 0)), (ushort)(first + 2));
        ring.SetDesc(first + 2, header + 0x80, 1, VirtQueue.DescFlagWrite);
        ring.Offer((ushort)first);
    }

    [Fact]
    public void BlockRoundTripsAndRefusesAnotherDisk()
    {
        var disk = new MemoryBackend(64);
        disk.Data[512] = 0x77;
        var (_, t) = Build(new VirtioBlock(disk, "SER1"));
        var drv = new TestDriver(t);
        drv.Negotiate(0);
        var ring = new TestRing(_mem, 16, 0x10000);
        drv.SetupQueue(0, ring);
        drv.DriverOk();
        BlockRequest(_mem, ring, 0, VirtioBlock.TypeIn, 1, 0x60000);
        drv.Notify(0);
        Assert.Equal(0x77, _mem.ReadUInt16(0x60000) & 0xFF);

        var (_, t2) = Build(new VirtioBlock(new MemoryBackend(64), "SER1"));
        RoundTripAll(t, t2);
        t2.Resume();
        BlockRequest(_mem, ring, 3, VirtioBlock.TypeIn, 1, 0x61000);
        new TestDriver(t2).Notify(0);
        Assert.Equal(2, ring.UsedIdx);
        Assert.Equal(2UL, ((VirtioBlock)t2.Device).Requests);

        var device = t.PersistentParts().Last();
        StateAssert.RejectsDamagedRecords(device, () => Build(new VirtioBlock(new MemoryBackend(64), "SER1")).T.PersistentParts().Last());
        var bigger = Build(new VirtioBlock(new MemoryBackend(128), "SER1")).T.PersistentParts().Last();
        var e = Assert.Throws<StateFormatException>(() => DeviceState.Restore(bigger, DeviceState.Save(device), VirtioBlockState.Version));
        Assert.Equal("pci/00:03.0/device", e.RecordName);
        Assert.Contains("mem.img", e.Message);
    }

    /// <summary>A disk whose reads wait at a gate: a request "in flight" on another thread.</summary>
    private sealed class GatedBackend(MemoryBackend inner) : IBlockBackend
    {
        public readonly ManualResetEventSlim Entered = new(), Gate = new();
        public string Path => inner.Path;
        public ulong SizeBytes => inner.SizeBytes;
        public bool ReadOnly => inner.ReadOnly;
        public void Read(ulong offset, Span<byte> buffer) { Entered.Set(); Gate.Wait(TimeSpan.FromSeconds(10)); inner.Read(offset, buffer); }
        public void Write(ulong offset, ReadOnlySpan<byte> data) => inner.Write(offset, data);
        public void Flush() { }
        public void Discard(ulong offset, ulong lengthBytes) { }
        public void WriteZeroes(ulong offset, ulong lengthBytes, bool mayUnmap) { }
        public void Dispose() { }
    }

    [Fact]
    public void PauseWaitsForTheBlockRequestInFlight()
    {
        var disk = new GatedBackend(new MemoryBackend(64));
        var (_, t) = Build(new VirtioBlock(disk));
        var drv = new TestDriver(t);
        drv.Negotiate(0);
        var ring = new TestRing(_mem, 16, 0x10000);
        drv.SetupQueue(0, ring);
        drv.DriverOk();
        BlockRequest(_mem, ring, 0, VirtioBlock.TypeIn, 0, 0x60000);
        var io = new Thread(() => t.HandleNotify(0)); // what the I/O thread does on an ioeventfd
        io.Start();
        Assert.True(disk.Entered.Wait(TimeSpan.FromSeconds(5)));
        var pause = Task.Run(t.Pause);
        Assert.False(pause.Wait(150)); // the request is still running: Pause has not returned
        disk.Gate.Set();
        Assert.True(pause.Wait(TimeSpan.FromSeconds(5)));
        Assert.Equal(1, ring.UsedIdx); // completed before Pause returned
        BlockRequest(_mem, ring, 3, VirtioBlock.TypeIn, 0, 0x61000);
        t.HandleNotify(0);
        Assert.Equal(1, ring.UsedIdx); // paused: deferred
        t.Resume();
        Assert.Equal(2, ring.UsedIdx);
        io.Join();
    }

    private static byte[] Frame(int length)
    {
        var p = new byte[length];
        for (int i = VirtioNet.HeaderSize; i < length; i++) p[i] = (byte)i;
        return p;
    }

    [Fact]
    public void NetKeepsAPartlyBufferedFrameAndItsHeldChainsAcrossRestore()
    {
        var tap = new FakeNetBackend();
        byte[] mac = [0x52, 0x54, 0, 1, 2, 3];
        var (_, t) = Build(new VirtioNet(tap, mac));
        var drv = new TestDriver(t);
        drv.Negotiate(VirtioNet.FeatureMrgRxBuf);
        var rx = new TestRing(_mem, 8, 0x10000);
        drv.SetupQueue(VirtioNet.RxQueue, rx);
        drv.SetupQueue(VirtioNet.TxQueue, new TestRing(_mem, 8, 0x20000));
        drv.DriverOk();
        FillWritable(rx, 0, 0x40000, 64);
        var frame = Frame(100);
        tap.Incoming.Enqueue(frame);
        tap.ReceiveReady!();
        Assert.Equal(0, rx.UsedIdx); // 64 bytes of buffers for a 100-byte frame: held, waiting for more

        var tap2 = new FakeNetBackend();
        var (_, t2) = Build(new VirtioNet(tap2, mac));
        RoundTripAll(t, t2);
        t2.Resume();
        FillWritable(rx, 1, 0x41000, 64);
        new TestDriver(t2).Notify(VirtioNet.RxQueue);
        Assert.Equal(2, rx.UsedIdx);
        Assert.Equal((0u, 64u), rx.UsedElem(0)); // the chain held before the snapshot was used, not lost
        Assert.Equal((1u, 36u), rx.UsedElem(1));
        Assert.True(_mem.TryGetReadOnlySpan(0x40000 + VirtioNet.HeaderSize, 64 - VirtioNet.HeaderSize, out var got));
        Assert.Equal(frame.AsSpan(VirtioNet.HeaderSize, 64 - VirtioNet.HeaderSize).ToArray(), got.ToArray());

        var device = t.PersistentParts().Last();
        StateAssert.RejectsDamagedRecords(device, () => Build(new VirtioNet(new FakeNetBackend(), mac)).T.PersistentParts().Last());
        // Another MAC (a clone's config.json): the device keeps its own, from its configuration, and takes the rest.
        var (_, otherMacTransport) = Build(new VirtioNet(new FakeNetBackend(), [0x52, 0x54, 0, 9, 9, 9]));
        DeviceState.Restore(otherMacTransport.PersistentParts().Last(), DeviceState.Save(device), VirtioNetState.Version);
        var config = new byte[6];
        ((VirtioNet)otherMacTransport.Device).ReadConfig(0, config);
        Assert.Equal(new byte[] { 0x52, 0x54, 0, 9, 9, 9 }, config);
    }

    [Fact]
    public void PausedNetNeitherReadsTheTapNorWritesReceiveBuffers()
    {
        var tap = new FakeNetBackend();
        var (_, t) = Build(new VirtioNet(tap, [0x52, 0x54, 0, 1, 2, 3]));
        var drv = new TestDriver(t);
        drv.Negotiate(VirtioNet.FeatureMrgRxBuf);
        var rx = new TestRing(_mem, 8, 0x10000);
        drv.SetupQueue(VirtioNet.RxQueue, rx);
        drv.SetupQueue(VirtioNet.TxQueue, new TestRing(_mem, 8, 0x20000));
        drv.DriverOk();
        FillWritable(rx, 0, 0x40000, 2048);
        t.Pause();
        tap.Incoming.Enqueue(Frame(80));
        tap.ReceiveReady!(); // the tap thread saw readiness
        Assert.Single(tap.Incoming); // not read
        Assert.Equal(0, rx.UsedIdx);
        Assert.Equal(0UL, _mem.ReadUInt64(0x40000 + VirtioNet.HeaderSize));
        t.Resume();
        Assert.Empty(tap.Incoming);
        Assert.Equal(1, rx.UsedIdx);
    }

    [Fact]
    public void PausedBalloonReturnsNoStatsBufferUntilResume()
    {
        var balloon = new VirtioBalloon(_mem);
        var (_, t) = Build(balloon);
        var drv = new TestDriver(t);
        drv.Negotiate(VirtioBalloon.FeatureStatsVq);
        var stats = new TestRing(_mem, 8, 0x30000);
        drv.SetupQueue(0, new TestRing(_mem, 8, 0x10000));
        drv.SetupQueue(1, new TestRing(_mem, 8, 0x20000));
        drv.SetupQueue(VirtioBalloon.StatsQueue, stats);
        drv.DriverOk();
        _mem.WriteUInt16(0x48000, 4);          // free_memory
        _mem.WriteUInt64(0x48002, 12345);
        stats.SetDesc(0, 0x48000, 10, 0);
        stats.Offer(0);
        drv.Notify(VirtioBalloon.StatsQueue);
        Assert.Equal(0, stats.UsedIdx);         // the device holds the stats buffer
        balloon.SetTarget(1 << 20);

        var balloon2 = new VirtioBalloon(_mem);
        var (_, t2) = Build(balloon2);
        RoundTripAll(t, t2);
        Assert.Equal(256u, balloon2.TargetPages);
        Assert.Equal(12345UL, balloon2.Statistics.Stats["free_memory"]);
        balloon2.RequestStats();
        Assert.Equal(0, stats.UsedIdx);         // paused (restored): the held buffer is not returned
        t2.Resume();
        Assert.Equal(1, stats.UsedIdx);         // the restored device returned the buffer it held before the snapshot
        Assert.Equal(0u, stats.UsedElem(0).Id);
        StateAssert.RejectsDamagedRecords(t.PersistentParts().Last(), () => Build(new VirtioBalloon(_mem)).T.PersistentParts().Last());
    }

    [Fact]
    public void BalloonStatsWorkerDoesNotRunWhilePaused()
    {
        using var worker = new DeviceWorker("test-worker", () => { }, TimeSpan.FromMilliseconds(10));
        SpinWait.SpinUntil(() => worker.Runs >= 2, TimeSpan.FromSeconds(5));
        worker.Pause();
        long runs = worker.Runs;
        worker.Signal();
        Thread.Sleep(100);
        Assert.Equal(runs, worker.Runs);
        worker.Resume();
        Assert.True(SpinWait.SpinUntil(() => worker.Runs > runs, TimeSpan.FromSeconds(5)));

        var balloon = new VirtioBalloon(_mem, statsIntervalSeconds: 1);
        Assert.NotNull(balloon.StatsWorker);
        balloon.Pause();
        Assert.True(balloon.StatsWorker!.IsPaused);
        balloon.Resume();
        Assert.False(balloon.StatsWorker.IsPaused);
        balloon.Dispose();
    }

    [Fact]
    public void VsockSendsTransportResetAfterRestoreAndOnlyThen()
    {
        var vsock = new VirtioVsock(_mem, 5, _dir.File("a.sock"));
        var (_, t) = Build(vsock);
        var drv = new TestDriver(t);
        drv.Negotiate(VirtioVsock.FeatureStream);
        var events = new TestRing(_mem, 4, 0x30000);
        drv.SetupQueue(VirtioVsock.RxQueue, new TestRing(_mem, 8, 0x10000));
        drv.SetupQueue(VirtioVsock.TxQueue, new TestRing(_mem, 8, 0x20000));
        drv.SetupQueue(VirtioVsock.EventQueue, events);
        drv.DriverOk();
        _mem.WriteUInt32(0x48000, 0xFFFF_FFFF);
        FillWritable(events, 0, 0x48000, 4);
        drv.Notify(VirtioVsock.EventQueue);
        Assert.Equal(0, events.UsedIdx); // a running device sends no event

        var vsock2 = new VirtioVsock(_mem, 5, _dir.File("b.sock"));
        var (_, t2) = Build(vsock2);
        RoundTripAll(t, t2);
        Assert.True(vsock2.ResetEventPending);
        Assert.Equal(0, events.UsedIdx);
        t2.Resume();
        Assert.True(SpinWait.SpinUntil(() => events.UsedIdx == 1, TimeSpan.FromSeconds(5)));
        Assert.Equal((0u, 4u), events.UsedElem(0));
        Assert.Equal(VirtioVsock.VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, _mem.ReadUInt32(0x48000));
        Assert.Equal(1, vsock2.EventsSent);
        t.Resume();
        Thread.Sleep(50);
        Assert.Equal(0, vsock.EventsSent);

        var device = t.PersistentParts().Last();
        int n = 0;
        StateAssert.RejectsDamagedRecords(device, () => Build(new VirtioVsock(_mem, 5, _dir.File($"c{n++}.sock"))).T.PersistentParts().Last());
        // Another CID (a clone's config.json): the device keeps its own and owes the driver a transport reset, which
        // makes the driver read the CID again.
        var otherCid = new VirtioVsock(_mem, 6, _dir.File("d.sock"));
        var otherCidTransport = Build(otherCid).T;
        DeviceState.Restore(otherCidTransport.PersistentParts().Last(), DeviceState.Save(device), VirtioVsockState.Version);
        Assert.Equal(6UL, otherCid.GuestCid);
        Assert.True(otherCid.ResetEventPending);
        otherCidTransport.Dispose();
        t.Dispose();
        t2.Dispose();
    }

    [Fact]
    public void BusAndDeviceSetListPartsWithStableNames()
    {
        var bus = new PciBus(new MmioBus(), VirtioPciTransportTests.TestWindows, _ => new FakeLine());
        bus.AddDevice(3, new VirtioPciTransport(new VirtioRng(), _mem));
        bus.AddDevice(4, new VirtioPciTransport(new VirtioBalloon(_mem), _mem));
        var names = bus.PersistentParts().Select(p => p.StateName).ToArray();
        Assert.Equal(["pci/00:00.0",
            "pci/00:03.0", "pci/00:03.0/virtio", "pci/00:03.0/queue0", "pci/00:03.0/device",
            "pci/00:04.0", "pci/00:04.0/virtio", "pci/00:04.0/queue0", "pci/00:04.0/queue1", "pci/00:04.0/queue2", "pci/00:04.0/device"], names);
        Assert.Equal(2, bus.PausableParts().Count);

        var serial = new KvmPS.Devices.Legacy.Serial16550(new FakeLine(), _ => { });
        var set = new DeviceSet([serial, new KvmPS.Devices.Legacy.CmosRtc(1 << 20)], bus, null);
        Assert.Equal(["serial0", "cmos-rtc"], set.PersistentParts().Take(2).Select(p => p.StateName));
        set.PauseAll();
        Assert.All(bus.Devices.Select(d => d.Device).OfType<VirtioPciTransport>(), t => Assert.True(t.IsPaused));
        set.ResumeAll();
        Assert.All(bus.Devices.Select(d => d.Device).OfType<VirtioPciTransport>(), t => Assert.False(t.IsPaused));
        bus.Dispose();
    }
}
