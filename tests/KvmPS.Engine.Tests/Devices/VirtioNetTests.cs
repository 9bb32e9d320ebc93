using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Net;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using KvmPS.Vm;
using Xunit;

namespace KvmPS.Engine.Tests.Devices;

public sealed class VirtioNetTests : IDisposable
{
    private const ulong RamBytes = 16UL << 20;
    private readonly GuestMemory _mem = GuestMemory.Create(RamBytes);
    public void Dispose() => _mem.Dispose();

    private static readonly byte[] Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    private static DeviceConfig ParseFlag(string flag) => DeviceConfig.FromOptions(DeviceOptions.FromFlag(flag));

    // ---- configuration ----

    [Fact]
    public void ParsesOptionsAndDerivesAStableLocallyAdministeredMac()
    {
        var c = (NetDeviceConfig)ParseFlag("net,tap=kvt0,bridge=br0,mtu=1400");
        Assert.Equal("kvt0", c.Tap);
        Assert.Equal("br0", c.Bridge);
        Assert.Equal(1400, c.Mtu);
        Assert.Equal(c.Mac, ((NetDeviceConfig)ParseFlag("net,tap=kvt0")).Mac);
        Assert.NotEqual(c.Mac, ((NetDeviceConfig)ParseFlag("net,tap=kvt1")).Mac);
        Assert.Equal([0x52, 0x54, 0x00], c.Mac[..3]);
        Assert.Equal(2, c.Mac[0] & 3); // locally administered, unicast
        var explicitMac = (NetDeviceConfig)ParseFlag("net,tap=kvt0,mac=02:AA:bb:00:00:01");
        Assert.Equal("02:aa:bb:00:00:01", NetDeviceConfig.FormatMac(explicitMac.Mac));

        using var doc = JsonDocument.Parse("""{ "type": "net", "tap": "kvt0", "mac": "52:54:00:00:00:09" }""");
        var j = (NetDeviceConfig)DeviceConfig.FromOptions(DeviceOptions.FromJson(doc.RootElement, "config.json: devices[0]"));
        Assert.Equal("52:54:00:00:00:09", NetDeviceConfig.FormatMac(j.Mac));
        Assert.Null(j.Mtu);
    }

    [Theory]
    [InlineData("net,tap=kvt0,mac=01:00:5e:00:00:01", "multicast")]
    [InlineData("net,tap=kvt0,mac=00:00:00:00:00:00", "all zero")]
    [InlineData("net,tap=kvt0,mac=52:54:00:12:34", "six two-digit hex bytes")]
    [InlineData("net,tap=kvt0,mac=52:54:00:12:34:zz", "'zz' is not a hex byte")]
    [InlineData("net,tap=a-very-long-tap-name", "longer than 15 bytes")]
    [InlineData("net,tap=bad/name", "not a valid interface name")]
    [InlineData("net,tap=kvt0,bridge=a-very-long-bridge0", "key 'bridge'")]
    [InlineData("net,bridge=br0", "needs 'tap'")]
    [InlineData("net,tap=kvt0,mtu=20", "out of range")]
    [InlineData("net,tap=kvt0,queues=2", "unknown key")]
    public void InvalidOptionsAreRejectedWithTheReason(string flag, string expected)
    {
        var e = Assert.Throws<DeviceConfigException>(() => ParseFlag(flag));
        Assert.Contains(expected, e.Message);
        Assert.Contains("--device net", e.Message);
    }

    [Fact]
    public void AMissingBridgeIsReportedBeforeAnyTapIsTouched()
    {
        var c = (NetDeviceConfig)ParseFlag("net,tap=kvtnone0,bridge=kvtnobr0");
        var e = Assert.Throws<DeviceConfigException>(() => c.CreateDevice(new DeviceContext(_mem, null!, _ => { })));
        Assert.Contains("bridge 'kvtnobr0' does not exist", e.Message);
        Assert.False(Directory.Exists("/sys/class/net/kvtnone0"));
    }

    [Fact]
    public void IfreqMatchesTheKernelHeaders()
    {
        Assert.Equal(40, Marshal.SizeOf<Tun.IfReq>());
        Assert.Equal(16, (int)Marshal.OffsetOf<Tun.IfReq>(nameof(Tun.IfReq.ifr_flags)));
        Assert.Equal(16, (int)Marshal.OffsetOf<Tun.IfReq>(nameof(Tun.IfReq.ifr_ifindex)));
        string c = """
            #include <stdio.h>
            #include <sys/ioctl.h>
            #include <stddef.h>
            #include <net/if.h>
            #include <linux/if_tun.h>
            #include <linux/sockios.h>
            int main(void) {
              printf("%zu %zu %zu %zu\n", sizeof(struct ifreq), offsetof(struct ifreq, ifr_flags), offsetof(struct ifreq, ifr_ifindex), offsetof(struct ifreq, ifr_mtu));
              printf("%lx %lx %lx %lx\n", (unsigned long)TUNSETIFF, (unsigned long)TUNSETOFFLOAD, (unsigned long)TUNSETVNETHDRSZ, (unsigned long)TUNSETPERSIST);
              printf("%x %x %x %x %x %x\n", SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFMTU, SIOCGIFINDEX, SIOCBRADDIF, SIOCBRDELIF);
              printf("%x %x %x %x\n", IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_UP);
              return 0; }
            """;
        var lines = NativeCompiler.CompileAndRun(c, "ifreq_layout").Split('\n');
        Assert.Equal("40 16 16 16", lines[0]);
        Assert.Equal($"{Tun.TUNSETIFF:x} {Tun.TUNSETOFFLOAD:x} {Tun.TUNSETVNETHDRSZ:x} {Tun.TUNSETPERSIST:x}", lines[1]);
        Assert.Equal($"{Tun.SIOCGIFFLAGS:x} {Tun.SIOCSIFFLAGS:x} {Tun.SIOCSIFMTU:x} {Tun.SIOCGIFINDEX:x} {Tun.SIOCBRADDIF:x} {Tun.SIOCBRDELIF:x}", lines[2]);
        Assert.Equal($"{Tun.IFF_TAP:x} {Tun.IFF_NO_PI:x} {Tun.IFF_VNET_HDR:x} {Tun.IFF_UP:x}", lines[3]);
    }

    // ---- device behaviour through the transport (no KVM) ----

    private (VirtioPciTransport T, TestDriver Drv, TestRing Rx, TestRing Tx, FakeNetBackend B, VirtioNet Dev, List<string> Errors)
        Start(bool mergeable = true, ushort size = 8)
    {
        var b = new FakeNetBackend();
        var dev = new VirtioNet(b, Mac, 1500);
        var errors = new List<string>();
        var t = new VirtioPciTransport(dev, _mem) { ErrorLog = errors.Add };
        var drv = new TestDriver(t);
        Assert.True(drv.Negotiate(VirtioNet.FeatureMac | VirtioNet.FeatureStatus | VirtioNet.FeatureMtu | (mergeable ? VirtioNet.FeatureMrgRxBuf : 0)));
        var rx = new TestRing(_mem, size, 0x10000);
        var tx = new TestRing(_mem, size, 0x20000);
        drv.SetupQueue(0, rx);
        drv.SetupQueue(1, tx);
        drv.DriverOk();
        return (t, drv, rx, tx, b, dev, errors);
    }

    private static byte[] Packet(int frameBytes, byte fill)
    {
        var p = new byte[VirtioNet.HeaderSize + frameBytes];
        p.AsSpan(VirtioNet.HeaderSize).Fill(fill);
        p[0] = 0xff; // header garbage from the back-end is cleared
        return p;
    }

    [Fact]
    public void OffersMacStatusMrgRxBufAndMtuInConfig()
    {
        var (t, drv, _, _, _, dev, _) = Start();
        ulong f = drv.DeviceFeatures();
        Assert.Equal(VirtioNet.FeatureMac | VirtioNet.FeatureStatus | VirtioNet.FeatureMrgRxBuf | VirtioNet.FeatureMtu, f & 0xFF_FFFF);
        Span<byte> cfg = stackalloc byte[12];
        for (int i = 0; i < 12; i++) cfg[i] = (byte)drv.Read(VirtioPciTransport.DeviceCfgOffset + (ulong)i, 1);
        Assert.Equal(Mac, cfg[..6].ToArray());
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(cfg[6..]));   // LINK_UP
        Assert.Equal(1500, BinaryPrimitives.ReadUInt16LittleEndian(cfg[10..]));
        Assert.Equal(0x020000u, dev.PciClassCode);
        t.Dispose();
    }

    /// <summary>
    /// A restored (or migrated) device announces the MAC with RARP broadcasts when the VM first runs, so the new
    /// host's bridge learns it; a pause and resume of a running VM announces nothing, and neither counts as guest traffic.
    /// </summary>
    [Fact]
    public void ARestoredDeviceAnnouncesItsMacOnceWhenItRuns()
    {
        var b = new FakeNetBackend();
        using var dev = new VirtioNet(b, Mac);
        dev.Pause();
        dev.Resume();
        Assert.Empty(b.Sent);

        var writer = new KvmPS.State.StateWriter();
        dev.SaveState(writer);
        var b2 = new FakeNetBackend();
        using var restored = new VirtioNet(b2, Mac);
        restored.Pause();
        restored.RestoreState(new KvmPS.State.StateReader(writer.ToArray(), "pci/00:01.0"), VirtioNetState.Version);
        Assert.Empty(b2.Sent); // restore has no side effect before the VM runs
        restored.Resume();
        Assert.Equal(VirtioNet.Announcements, b2.Sent.Count);
        var frame = b2.Sent[0].AsSpan(VirtioNet.HeaderSize);
        Assert.Equal(VirtioNet.HeaderSize + 60, b2.Sent[0].Length);
        Assert.True(b2.Sent[0].AsSpan(0, VirtioNet.HeaderSize).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(Enumerable.Repeat((byte)0xff, 6), frame[..6].ToArray());
        Assert.Equal(Mac, frame[6..12].ToArray());
        Assert.Equal(new byte[] { 0x80, 0x35, 0, 1, 8, 0, 6, 4, 0, 3 }, frame[12..22].ToArray());
        Assert.Equal(Mac, frame[22..28].ToArray());
        Assert.Equal(Mac, frame[32..38].ToArray());
        Assert.Equal(0, restored.TxPackets);
        restored.Pause();
        restored.Resume();
        Assert.Equal(VirtioNet.Announcements, b2.Sent.Count); // once only
    }

    [Fact]
    public void TransmitGathersAChainIntoOneFrame()
    {
        var (t, drv, _, tx, b, dev, errors) = Start();
        // header (12) + 20 bytes in one buffer, 30 more in a second
        _mem.Write(0x100000, new byte[12]);
        _mem.Write(0x100000 + 12, Enumerable.Repeat((byte)0xAB, 20).ToArray());
        _mem.Write(0x200000, Enumerable.Repeat((byte)0xCD, 30).ToArray());
        tx.SetDesc(0, 0x100000, 32, VirtQueue.DescFlagNext, 1);
        tx.SetDesc(1, 0x200000, 30, 0);
        tx.Offer(0);
        drv.Notify(1);
        Assert.Single(b.Sent);
        Assert.Equal(62, b.Sent[0].Length);
        Assert.Equal(0xAB, b.Sent[0][12]);
        Assert.Equal(0xCD, b.Sent[0][61]);
        Assert.Equal(1, tx.UsedIdx);
        Assert.Equal((0u, 0u), tx.UsedElem(0));
        // too short for a header: dropped and counted, still returned
        tx.SetDesc(2, 0x100000, 8, 0);
        tx.Offer(2);
        drv.Notify(1);
        Assert.Single(b.Sent);
        Assert.Equal(1, dev.TxDropped);
        Assert.Equal(2, tx.UsedIdx);
        Assert.Empty(errors);
        t.Dispose();
    }

    [Fact]
    public void ReceiveMergesBuffersAndWaitsForMoreWithoutDropping()
    {
        var (t, drv, rx, _, b, dev, errors) = Start();
        // two 512-byte buffers available; a 1000-byte frame needs 1012 bytes → two buffers, num_buffers = 2
        for (int i = 0; i < 4; i++) rx.SetDesc(i, 0x300000 + 0x1000UL * (uint)i, 512, VirtQueue.DescFlagWrite);
        rx.Offer(0);
        rx.Offer(1);
        drv.Notify(0);
        b.Incoming.Enqueue(Packet(1000, 0x11));
        b.Incoming.Enqueue(Packet(1000, 0x22)); // will not fit until more buffers come
        b.ReceiveReady!();
        Assert.Equal(2, rx.UsedIdx);
        Assert.Equal((0u, 512u), rx.UsedElem(0));
        Assert.Equal((1u, 500u), rx.UsedElem(1));
        Assert.Equal(2, _mem.ReadUInt16(0x300000 + 10)); // num_buffers
        Assert.Equal(0, _mem.ReadByte(0x300000));       // flags cleared
        Assert.Equal(0x11, _mem.ReadByte(0x301000 + 499));
        Assert.Equal(1, dev.RxStalls);
        Assert.Empty(b.Incoming); // the second was taken and is held inside the device, not dropped
        Assert.Equal(0, dev.RxDropped);
        int armsWhileStalled = b.Arms;
        rx.Offer(2);
        drv.Notify(0);
        Assert.Equal(2, rx.UsedIdx); // one 512-byte buffer is not enough yet
        rx.Offer(3);
        drv.Notify(0);
        Assert.Equal(4, rx.UsedIdx);
        Assert.Equal(0x22, _mem.ReadByte(0x303000 + 499));
        Assert.Equal(2, dev.RxPackets);
        Assert.Equal(0, dev.RxDropped);
        Assert.True(b.Arms > armsWhileStalled, "the back-end is re-armed once the packets are drained");
        Assert.Empty(errors);
        t.Dispose();
    }

    [Fact]
    public void WithoutMrgRxBufAFrameTooBigForOneBufferIsDroppedAndCounted()
    {
        var (t, drv, rx, _, b, dev, _) = Start(mergeable: false);
        rx.SetDesc(0, 0x300000, 512, VirtQueue.DescFlagWrite);
        rx.Offer(0);
        drv.Notify(0);
        b.Incoming.Enqueue(Packet(1000, 1));
        b.Incoming.Enqueue(Packet(100, 2));
        b.ReceiveReady!();
        Assert.Equal(1, dev.RxDropped);
        Assert.Equal(1, rx.UsedIdx);
        Assert.Equal((0u, 112u), rx.UsedElem(0));
        Assert.Equal(1, _mem.ReadUInt16(0x300000 + 10));
        t.Dispose();
    }

    [Fact]
    public void AReadableRxBufferNeedsResetAndTheDeviceRecovers()
    {
        var (t, drv, rx, _, b, _, errors) = Start();
        rx.SetDesc(0, 0x300000, 512, 0); // device-readable: not a receive buffer
        rx.Offer(0);
        b.Incoming.Enqueue(Packet(60, 3));
        drv.Notify(0);
        Assert.True(t.NeedsReset);
        Assert.Contains(errors, e => e.Contains("receive queue") && e.Contains("needs reset"));
        b.ReceiveReady!(); // the back-end firing on a broken device changes nothing
        Assert.True(t.NeedsReset);
        drv.WriteStatus(0);
        Assert.Equal(0, t.Status);
        t.Dispose();
    }

    private ulong RandomAddress(Random rng) => rng.Next(6) switch
    {
        0 => (ulong)rng.NextInt64(),
        1 => RamBytes - (ulong)rng.Next(0, 64),
        2 => 0xFFFF_FFFF_FFFF_FFF0UL + (ulong)rng.Next(16),
        _ => (ulong)rng.NextInt64(0x40000, (long)RamBytes),
    };

    private uint RandomLength(Random rng) => rng.Next(5) switch
    {
        0 => (uint)rng.NextInt64(0, uint.MaxValue + 1L),
        1 => (uint)rng.Next(0, 16),
        _ => (uint)rng.Next(0, 4096),
    };

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void RandomRxAndTxChainsEndFineOrNeedsReset(int seed)
    {
        var rng = new Random(seed);
        int needsReset = 0, delivered = 0, sent = 0;
        for (int iteration = 0; iteration < 200; iteration++)
        {
            var b = new FakeNetBackend();
            var dev = new VirtioNet(b, Mac);
            var errors = new List<string>();
            using var t = new VirtioPciTransport(dev, _mem) { ErrorLog = errors.Add };
            var drv = new TestDriver(t);
            drv.Negotiate(VirtioFeatures.RingEventIdx | VirtioFeatures.RingIndirectDesc | (rng.Next(2) == 0 ? VirtioNet.FeatureMrgRxBuf : 0));
            ushort size = (ushort)(1 << rng.Next(0, 6));
            var rx = new TestRing(_mem, size, 0x10000);
            var tx = new TestRing(_mem, size, 0x20000);
            bool plausible = rng.Next(2) == 0;
            foreach (var (ring, write) in new[] { (rx, VirtQueue.DescFlagWrite), (tx, (ushort)0) })
                for (int i = 0; i < size; i++)
                {
                    if (plausible && rng.Next(8) != 0)
                        ring.SetDesc(i, (ulong)rng.Next(0x40000, 0xF00000), (uint)rng.Next(0, 2048),
                            (ushort)(write | (i + 1 < size && rng.Next(3) == 0 ? VirtQueue.DescFlagNext : 0)), (ushort)(i + 1));
                    else
                        ring.SetDesc(i, RandomAddress(rng), RandomLength(rng), (ushort)rng.Next(0, 8), (ushort)rng.Next(0, size + 1));
                }
            drv.SetupQueue(0, rx);
            drv.SetupQueue(1, tx);
            drv.DriverOk();
            for (int n = 0; n < 8; n++)
            {
                for (int k = rng.Next(0, 4); k > 0; k--) b.Incoming.Enqueue(Packet(rng.Next(0, 3000), (byte)n));
                foreach (var ring in new[] { rx, tx })
                {
                    ring.SetAvailIdx((ushort)rng.Next(0, plausible ? size + 1 : 3 * size));
                    for (int i = 0; i < size; i++) _mem.WriteUInt16(ring.Avail + 4 + 2UL * (uint)i, (ushort)rng.Next(0, size + 1));
                }
                switch (rng.Next(3))
                {
                    case 0: drv.Notify(0); break;
                    case 1: drv.Notify(1); break;
                    default: b.ReceiveReady?.Invoke(); break;
                }
            }
            bool broken = (t.Status & VirtioStatus.NeedsReset) != 0;
            Assert.Equal(broken, errors.Count > 0);
            if (broken) needsReset++;
            delivered += (int)dev.RxPackets;
            sent += b.Sent.Count;
            foreach (var p in b.Sent) Assert.InRange(p.Length, VirtioNet.HeaderSize, VirtioNet.MaxPacket);
            drv.WriteStatus(0);
            Assert.Equal(0, t.Status);
        }
        Assert.True(needsReset > 20, $"only {needsReset} resets");
        Assert.True(delivered > 10, $"only {delivered} packets received");
        Assert.True(sent > 10, $"only {sent} packets sent");
    }
}
