using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Rng;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>
/// Seeded fuzzing of the device side of a split virtqueue: random descriptor tables, avail rings and indices.
/// Every guest access of VirtQueue goes through GuestMemory's checked spans, so "no out-of-bounds access" means:
/// no exception escapes, every buffer handed to a device lies inside guest RAM, and the queue ends up either
/// healthy or broken with a reason (which the transport turns into NEEDS_RESET).
/// </summary>
public sealed class VirtQueueFuzzTests : IDisposable
{
    private const ulong RamBytes = 16UL << 20;
    private readonly GuestMemory _mem = GuestMemory.Create(RamBytes);
    public void Dispose() => _mem.Dispose();

    private ulong RandomAddress(Random rng) => rng.Next(6) switch
    {
        0 => (ulong)rng.NextInt64(),                               // anywhere
        1 => RamBytes - (ulong)rng.Next(0, 64),                    // around the end of RAM
        2 => 0xFFFF_FFFF_FFFF_FFF0UL + (ulong)rng.Next(16),       // wrap-around
        _ => (ulong)rng.NextInt64(0x10000, (long)RamBytes),        // inside RAM
    };

    private uint RandomLength(Random rng) => rng.Next(5) switch
    {
        0 => (uint)rng.NextInt64(0, uint.MaxValue + 1L),
        1 => (uint)rng.Next(0, 64) * 16,
        _ => (uint)rng.Next(0, 8192),
    };

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void RandomRingsNeverEscapeGuestMemory(int seed)
    {
        var rng = new Random(seed);
        int broken = 0, chains = 0;
        var chain = new DescriptorChain();
        for (int iteration = 0; iteration < 2000; iteration++)
        {
            ushort size = (ushort)(1 << rng.Next(0, 8));
            bool eventIdx = rng.Next(2) == 0, indirect = rng.Next(2) == 0;
            var ring = new TestRing(_mem, size, 0x1000);
            // Random descriptor table, random indirect tables somewhere in RAM, random avail ring contents.
            // Half of the rings are "nearly valid" (plausible buffers, forward links) so the success paths get exercised too.
            bool plausible = rng.Next(2) == 0;
            for (int i = 0; i < size; i++)
            {
                if (plausible && rng.Next(16) != 0)
                    ring.SetDesc(i, (ulong)rng.Next(0x10000, 0x800000), (uint)rng.Next(0, 4096),
                        (ushort)(rng.Next(2) * VirtQueue.DescFlagWrite | (i + 1 < size && rng.Next(3) == 0 ? VirtQueue.DescFlagNext : 0)), (ushort)(i + 1));
                else
                    ring.SetDesc(i, RandomAddress(rng), RandomLength(rng), (ushort)rng.Next(0, 8), (ushort)rng.Next(0, size + 2));
            }
            if (rng.Next(3) == 0)
            {
                ulong table = 0x80000 + 16UL * (ulong)rng.Next(0, 64);
                for (int i = 0; i < 32; i++)
                    ring.SetDesc(i, RandomAddress(rng), RandomLength(rng), (ushort)rng.Next(0, 8), (ushort)rng.Next(0, 40), table);
                ring.SetDesc(rng.Next(size), table, (uint)rng.Next(0, 40) * 16, VirtQueue.DescFlagIndirect);
            }
            for (int i = 0; i < size; i++) _mem.WriteUInt16(ring.Avail + 4 + 2UL * (uint)i, (ushort)rng.Next(0, size + 2));
            ring.SetAvailIdx((ushort)rng.Next(0, plausible ? size + 1 : 2 * size + 2));

            var q = ring.Create(eventIdx, indirect);
            for (int step = 0; step < 2 * size + 2; step++)
            {
                var result = q.Pop(chain);
                if (result == PopResult.Empty) break;
                if (result == PopResult.Error) { Assert.True(q.IsBroken); Assert.NotNull(q.Error); break; }
                chains++;
                foreach (var b in chain.Buffers)
                    Assert.True(b.Length == 0 || _mem.IsValidRange(b.Address, b.Length), $"buffer 0x{b.Address:x}+{b.Length} escaped guest RAM");
                Assert.True(chain.ReadableBytes + chain.WritableBytes <= q.MaxChainBytes);
                // Exercise the device-side copies on whatever survived validation.
                chain.WriteTo(_mem, 0, new byte[64]);
                chain.ReadFrom(_mem, 0, new byte[64]);
                q.PushUsed(chain.Head, (uint)Math.Min(chain.WritableBytes, 64));
                q.ShouldInterrupt();
                q.EnableNotifications();
            }
            if (q.IsBroken) broken++;
        }
        Assert.True(broken > 100, $"only {broken} broken queues: the fuzzer is not reaching the error paths");
        Assert.True(chains > 100, $"only {chains} valid chains: the fuzzer is not reaching the success paths");
    }

    [Fact]
    public void RandomTransportTrafficEndsFineOrNeedsReset()
    {
        // The whole transport: random ring contents behind a correctly negotiated virtio-rng, notified many times.
        var rng = new Random(42);
        int needsReset = 0;
        for (int iteration = 0; iteration < 300; iteration++)
        {
            var errors = new List<string>();
            using var t = new VirtioPciTransport(new VirtioRng(), _mem) { ErrorLog = errors.Add };
            var drv = new TestDriver(t);
            drv.Negotiate(VirtioFeatures.RingEventIdx | VirtioFeatures.RingIndirectDesc);
            ushort size = (ushort)(1 << rng.Next(0, 6));
            var ring = new TestRing(_mem, size, 0x1000);
            for (int i = 0; i < size; i++)
                ring.SetDesc(i, RandomAddress(rng), RandomLength(rng), (ushort)rng.Next(0, 8), (ushort)rng.Next(0, size + 1));
            drv.SetupQueue(0, ring);
            drv.DriverOk();
            for (int n = 0; n < 8; n++)
            {
                ring.SetAvailIdx((ushort)rng.Next(0, 3 * size));
                for (int i = 0; i < size; i++) _mem.WriteUInt16(ring.Avail + 4 + 2UL * (uint)i, (ushort)rng.Next(0, size + 1));
                drv.Notify(0);
            }
            bool broken = (t.Status & VirtioStatus.NeedsReset) != 0;
            Assert.Equal(broken, errors.Count > 0);
            if (broken) needsReset++;
            // Whatever happened, a reset brings the device back to a clean state.
            drv.WriteStatus(0);
            Assert.Equal(0, t.Status);
        }
        Assert.True(needsReset > 50);
    }
}
