using System.Runtime.InteropServices;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Balloon;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>virtio-balloon through the PCI transport without KVM: configuration, features, PFN validation, stats, fuzzing.</summary>
public sealed class VirtioBalloonTests : IDisposable
{
    private const ulong RamBytes = 16UL << 20;
    private readonly GuestMemory _mem = GuestMemory.Create(RamBytes);
    public void Dispose() => _mem.Dispose();

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int mincore(nint addr, nuint length, byte* vec);

    private unsafe bool Resident(ulong gpa)
    {
        byte v;
        Assert.Equal(0, mincore(_mem.Regions[0].HostAddress + (nint)gpa, 4096, &v));
        return (v & 1) != 0;
    }

    private static BalloonDeviceConfig Parse(string flag) => (BalloonDeviceConfig)DeviceConfig.FromOptions(DeviceOptions.FromFlag(flag));

    [Fact]
    public void ConfigurationParses()
    {
        var c = Parse("balloon,deflate_on_oom=on,stats_interval_s=5");
        Assert.True(c.DeflateOnOom);
        Assert.Equal(5, c.StatsIntervalSeconds);
        Assert.False(Parse("balloon").DeflateOnOom);
        var e = Assert.Throws<DeviceConfigException>(() => Parse("balloon,size=1"));
        Assert.Contains("'size'", e.Message);
        Assert.Throws<DeviceConfigException>(() => Parse("balloon,stats_interval_s=-1"));
    }

    private (VirtioPciTransport T, TestDriver D, VirtioBalloon B, TestRing[] Rings, List<string> Errors) Start(bool deflateOnOom = false, ulong features = VirtioBalloon.FeatureStatsVq)
    {
        var errors = new List<string>();
        var b = new VirtioBalloon(_mem, deflateOnOom, log: errors.Add);
        var t = new VirtioPciTransport(b, _mem) { ErrorLog = errors.Add };
        var d = new TestDriver(t);
        Assert.True(d.Negotiate(features));
        var rings = new TestRing[3];
        for (ushort q = 0; q < 3; q++)
        {
            rings[q] = new TestRing(_mem, 16, 0x10000 + 0x1000UL * q);
            d.SetupQueue(q, rings[q]);
        }
        d.DriverOk();
        return (t, d, b, rings, errors);
    }

    [Fact]
    public void FeaturesAndConfigSpace()
    {
        var (t, d, b, _, _) = Start(deflateOnOom: true);
        using var _t = t;
        ulong offered = d.DeviceFeatures();
        Assert.Equal(VirtioBalloon.FeatureStatsVq | VirtioBalloon.FeatureDeflateOnOom, offered & 0xFF);
        Assert.Equal(0UL, offered & VirtioBalloon.FeatureMustTellHost);
        using var plain = new VirtioPciTransport(new VirtioBalloon(_mem), _mem);
        Assert.Equal(0UL, new TestDriver(plain).DeviceFeatures() & VirtioBalloon.FeatureDeflateOnOom);

        b.SetTarget(1UL << 20);
        Assert.Equal(256UL, d.Read(VirtioPciTransport.DeviceCfgOffset, 4));
        d.Write(VirtioPciTransport.DeviceCfgOffset, 4, 12345);       // num_pages is not driver-writable
        d.Write(VirtioPciTransport.DeviceCfgOffset + 4, 4, 100);     // actual is
        Assert.Equal(256UL, d.Read(VirtioPciTransport.DeviceCfgOffset, 4));
        Assert.Equal(100UL, d.Read(VirtioPciTransport.DeviceCfgOffset + 4, 4));
        d.Write(VirtioPciTransport.DeviceCfgOffset + 5, 1, 1);       // byte-wide write to actual
        Assert.Equal(356UL, d.Read(VirtioPciTransport.DeviceCfgOffset + 4, 4));
        Assert.Equal(356u, b.ActualPages);
        Assert.Throws<ArgumentException>(() => b.SetTarget(RamBytes + 4096));
    }

    private void PostPfns(TestRing ring, ulong at, params uint[] pfns)
    {
        for (int i = 0; i < pfns.Length; i++) _mem.WriteUInt32(at + 4UL * (uint)i, pfns[i]);
        ring.SetDesc(0, at, (uint)(4 * pfns.Length), 0);
        ring.Offer(0);
    }

    [Fact]
    public void InflateDiscardsValidPagesAndIgnoresInvalidOnes()
    {
        var (t, d, b, rings, errors) = Start();
        using var _t = t;
        for (uint p = 0x200; p < 0x210; p++) _mem.WriteByte(p * 4096UL, 0x77);
        Assert.True(Resident(0x200 * 4096UL));
        uint beyond = (uint)(RamBytes / 4096);
        PostPfns(rings[0], 0x20000, 0x203, 0x200, 0x201, 0x202, beyond, 0xFFFFFFFF, 0x208, 0x208, 0x20f);
        d.Notify(0);
        Assert.Equal(1, rings[0].UsedIdx);
        Assert.Equal(0, d.Status & VirtioStatus.NeedsReset);
        Assert.Equal(7, b.InflatedPages);
        Assert.Equal(2, b.InvalidPfns);
        Assert.Equal(6 * 4096L, b.DiscardedBytes); // 0x200-0x203, 0x208 (twice: once), 0x20f
        Assert.False(Resident(0x200 * 4096UL));
        Assert.False(Resident(0x203 * 4096UL));
        Assert.True(Resident(0x204 * 4096UL));
        Assert.Equal(0, _mem.ReadByte(0x208 * 4096UL));
        Assert.Equal(0x77, _mem.ReadByte(0x209 * 4096UL));
        Assert.Contains(errors, e => e.Contains("ignored inflate PFN") && e.Contains($"0x{beyond:x}"));

        PostPfns(rings[1], 0x21000, 0x200, 0x201, beyond);
        d.Notify(1);
        Assert.Equal(1, rings[1].UsedIdx);
        Assert.Equal(2, b.DeflatedPages);
        Assert.Equal(3, b.InvalidPfns);
    }

    [Fact]
    public void StatsBufferIsHeldUntilTheDeviceAsksAgain()
    {
        var (t, d, b, rings, _) = Start();
        using var _t = t;
        void PostStats(ulong free)
        {
            ulong at = 0x22000;
            _mem.WriteUInt16(at, 4); _mem.WriteUInt64(at + 2, free);
            _mem.WriteUInt16(at + 10, 5); _mem.WriteUInt64(at + 12, 16UL << 20);
            _mem.WriteUInt16(at + 20, 99); _mem.WriteUInt64(at + 22, 7);
            rings[2].SetDesc(0, at, 30, 0);
            rings[2].Offer(0);
            d.Notify(2);
        }
        PostStats(1000);
        Assert.Equal(0, rings[2].UsedIdx); // held
        var (stats, age) = b.Statistics;
        Assert.Equal(1000UL, stats["free_memory"]);
        Assert.Equal(16UL << 20, stats["total_memory"]);
        Assert.Equal(7UL, stats["tag_99"]);
        Assert.NotNull(age);
        b.RequestStats();
        Assert.Equal(1, rings[2].UsedIdx); // given back: "send new stats"
        PostStats(2000);
        Assert.Equal(2000UL, b.Statistics.Stats["free_memory"]);
        Assert.Equal(1, rings[2].UsedIdx);
    }

    private static ulong RandomAddress(Random rng) => rng.Next(5) switch
    {
        0 => (ulong)rng.NextInt64(),
        1 => RamBytes - (ulong)rng.Next(0, 64),
        _ => (ulong)rng.NextInt64(0x30000, (long)RamBytes),
    };

    private static uint RandomPfn(Random rng) => rng.Next(4) switch
    {
        0 => (uint)rng.NextInt64(0, uint.MaxValue + 1L),
        1 => (uint)(RamBytes / 4096) + (uint)rng.Next(-2, 3),
        _ => (uint)rng.Next(0x30, (int)(RamBytes / 4096)),
    };

    [Theory]
    [InlineData(7)]
    [InlineData(8)]
    public void RandomChainsNeverEscape(int seed)
    {
        // Random descriptors and PFN arrays on all three queues, random host targets and stats requests. The device
        // must only ever discard whole pages of guest RAM, never throw, and end healthy or NEEDS_RESET with a reason.
        var rng = new Random(seed);
        int needsReset = 0;
        long discarded = 0;
        for (int iteration = 0; iteration < 200; iteration++)
        {
            var errors = new List<string>();
            var balloon = new VirtioBalloon(_mem, rng.Next(2) == 0, log: _ => { });
            using var t = new VirtioPciTransport(balloon, _mem) { ErrorLog = errors.Add };
            var d = new TestDriver(t);
            d.Negotiate(VirtioBalloon.FeatureStatsVq | VirtioFeatures.RingEventIdx | VirtioFeatures.RingIndirectDesc);
            var rings = new TestRing[3];
            for (ushort q = 0; q < 3; q++)
            {
                rings[q] = new TestRing(_mem, (ushort)(1 << rng.Next(0, 5)), 0x10000 + 0x1000UL * q);
                d.SetupQueue(q, rings[q]);
            }
            d.DriverOk();
            for (int n = 0; n < 12; n++)
            {
                int q = rng.Next(3);
                var ring = rings[q];
                for (int i = 0; i < ring.Size; i++)
                {
                    if (rng.Next(3) == 0)
                        ring.SetDesc(i, RandomAddress(rng), (uint)rng.Next(0, 5000), (ushort)rng.Next(0, 8), (ushort)rng.Next(0, ring.Size + 1));
                    else
                    {
                        ulong buf = 0x20000 + 0x1000UL * (ulong)rng.Next(0, 8);
                        int count = rng.Next(0, 300);
                        for (int k = 0; k < count && k < 1024; k++) _mem.WriteUInt32(buf + 4UL * (uint)k, RandomPfn(rng));
                        ring.SetDesc(i, buf, (uint)(4 * count + rng.Next(0, 4)), (ushort)(rng.Next(4) == 0 ? VirtQueue.DescFlagWrite : 0));
                    }
                }
                ring.SetAvailIdx((ushort)(ring.UsedIdx + rng.Next(0, 2 * ring.Size + 1)));
                for (int i = 0; i < ring.Size; i++) _mem.WriteUInt16(ring.Avail + 4 + 2UL * (uint)i, (ushort)rng.Next(0, ring.Size + 1));
                switch (rng.Next(6))
                {
                    case 0: balloon.SetTarget((ulong)rng.NextInt64(0, (long)RamBytes)); break;
                    case 1: balloon.RequestStats(); break;
                    default: d.Notify((ushort)q); break;
                }
            }
            bool broken = (t.Status & VirtioStatus.NeedsReset) != 0;
            Assert.Equal(broken, errors.Count > 0);
            if (broken) needsReset++;
            Assert.True(balloon.DiscardedBytes % 4096 == 0 && (ulong)balloon.DiscardedBytes <= (ulong)balloon.InflatedPages * 4096);
            discarded += balloon.DiscardedBytes;
            d.WriteStatus(0);
            Assert.Equal(0, t.Status);
        }
        Assert.True(needsReset > 20, $"only {needsReset} resets: the fuzzer is not reaching the error paths");
        Assert.True(discarded > 0, "no page was ever discarded: the fuzzer is not reaching the success paths");
    }
}
