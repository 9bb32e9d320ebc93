using System.Buffers.Binary;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Storage;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>
/// virtio-blk request handling through the real transport, without KVM: targeted request semantics, then seeded
/// random chains. Invariants: no exception escapes, every backend call is in range, the device is either fine or
/// NEEDS_RESET, statuses match the spec, and the disk changes only by requests that completed with OK.
/// </summary>
public sealed class VirtioBlockFuzzTests : IDisposable
{
    private const ulong RamBytes = 16UL << 20;
    private const ulong HeaderAt = 0x100000, StatusAt = 0x180000, DataAt = 0x200000, IndirectAt = 0x90000;
    private const int DiskSectors = 512;
    private const ulong Features = VirtioBlock.FeatureSegMax | VirtioBlock.FeatureBlkSize | VirtioBlock.FeatureFlush | VirtioBlock.FeatureRo
        | VirtioBlock.FeatureDiscard | VirtioBlock.FeatureWriteZeroes | VirtioFeatures.RingEventIdx | VirtioFeatures.RingIndirectDesc;
    private readonly GuestMemory _mem = GuestMemory.Create(RamBytes);
    public void Dispose() => _mem.Dispose();

    private sealed class Rig : IDisposable
    {
        public readonly VirtioPciTransport T;
        public readonly TestDriver Drv;
        public readonly List<string> Errors = new();
        public TestRing Ring = null!;
        public Rig(GuestMemory mem, IVirtioDevice device)
        {
            T = new VirtioPciTransport(device, mem) { ErrorLog = Errors.Add };
            Drv = new TestDriver(T);
            Start(mem);
        }
        public void Start(GuestMemory mem)
        {
            Assert.True(Drv.Negotiate(Drv.DeviceFeatures() & Features));
            Ring = new TestRing(mem, 16, 0x1000);
            mem.Fill(0x1000, 0x1000, 0);
            Drv.SetupQueue(0, Ring);
            Drv.DriverOk();
        }
        public bool NeedsReset => (T.Status & VirtioStatus.NeedsReset) != 0;
        public void Dispose() => T.Dispose();
    }

    private void Header(uint type, ulong sector)
    {
        _mem.WriteUInt32(HeaderAt, type);
        _mem.WriteUInt32(HeaderAt + 4, 0);
        _mem.WriteUInt64(HeaderAt + 8, sector);
    }

    /// <summary>header(16, readable) [+ data] + status(1, writable); returns the status byte or -1 if nothing was used.</summary>
    private int Submit(Rig rig, uint type, ulong sector, uint dataLen = 0, bool dataWritable = false)
    {
        Header(type, sector);
        _mem.WriteByte(StatusAt, 0xEE);
        int d = 0;
        rig.Ring.SetDesc(d, HeaderAt, 16, VirtQueue.DescFlagNext, (ushort)(d + 1)); d++;
        if (dataLen > 0) { rig.Ring.SetDesc(d, DataAt, dataLen, (ushort)(VirtQueue.DescFlagNext | (dataWritable ? VirtQueue.DescFlagWrite : 0)), (ushort)(d + 1)); d++; }
        rig.Ring.SetDesc(d, StatusAt, 1, VirtQueue.DescFlagWrite);
        ushort before = rig.Ring.UsedIdx;
        rig.Ring.Offer(0);
        rig.Drv.Notify(0);
        return rig.Ring.UsedIdx == before ? -1 : _mem.ReadByte(StatusAt);
    }

    private void Segment(ulong sector, uint count, uint flags)
    {
        _mem.WriteUInt64(DataAt, sector);
        _mem.WriteUInt32(DataAt + 8, count);
        _mem.WriteUInt32(DataAt + 12, flags);
    }

    [Fact]
    public void RequestSemantics()
    {
        var disk = new MemoryBackend(DiskSectors);
        using var rig = new Rig(_mem, new VirtioBlock(disk, "serial-0123456789ABC"));
        // OUT then IN.
        var pattern = BlockTestData.Pattern(4, 1);
        _mem.Write(DataAt, pattern);
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeOut, 10, 2048));
        Assert.Equal(pattern, disk.Data[(10 * 512)..(14 * 512)]);
        _mem.Fill(DataAt, 2048, 0);
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeIn, 10, 2048, dataWritable: true));
        Assert.Equal(pattern, _mem.GetReadOnlySpan(DataAt, 2048).ToArray());
        Assert.Equal(2049u, rig.Ring.UsedElem(1).Len);
        // Lengths that are not whole sectors, ranges past the end (and overflowing), unknown types.
        Assert.Equal(1, Submit(rig, VirtioBlock.TypeIn, 0, 100, dataWritable: true));
        Assert.Equal(1, Submit(rig, VirtioBlock.TypeIn, DiskSectors - 1, 1024, dataWritable: true));
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeIn, DiskSectors - 1, 512, dataWritable: true));
        Assert.Equal(1, Submit(rig, VirtioBlock.TypeOut, ulong.MaxValue / 256, 512));
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeIn, DiskSectors, 0, dataWritable: true)); // empty read at the end: nothing to do
        Assert.Equal(2, Submit(rig, 77, 0));
        Assert.Equal(2, Submit(rig, 10, 0, 512, dataWritable: true)); // GET_LIFETIME: not offered
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeFlush, 0));
        // GET_ID: 20 bytes, no terminator when full.
        _mem.Fill(DataAt, 32, 0xAA);
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeGetId, 0, 20, dataWritable: true));
        Assert.Equal("serial-0123456789ABC"u8.ToArray(), _mem.GetReadOnlySpan(DataAt, 20).ToArray());
        // WRITE_ZEROES (with and without unmap), DISCARD, bad flags, two segments.
        Segment(10, 2, 0);
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeWriteZeroes, 0, 16));
        Assert.Equal(new byte[1024], disk.Data[(10 * 512)..(12 * 512)]);
        Assert.Equal(pattern[1024..], disk.Data[(12 * 512)..(14 * 512)]);
        Segment(12, 1, VirtioBlock.WriteZeroesFlagUnmap);
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeWriteZeroes, 0, 16));
        Segment(13, 1, VirtioBlock.WriteZeroesFlagUnmap);
        Assert.Equal(2, Submit(rig, VirtioBlock.TypeDiscard, 0, 16)); // DISCARD with UNMAP: UNSUPP
        Segment(13, 1, 4);
        Assert.Equal(2, Submit(rig, VirtioBlock.TypeWriteZeroes, 0, 16));
        Assert.Equal(2, Submit(rig, VirtioBlock.TypeDiscard, 0, 32));
        Segment(DiskSectors - 1, 2, 0);
        Assert.Equal(1, Submit(rig, VirtioBlock.TypeDiscard, 0, 16));
        Segment(13, 1, 0);
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeDiscard, 0, 16));
        Assert.Equal(new byte[512], disk.Data[(13 * 512)..(14 * 512)]);
        // Host I/O errors: IOERR, the device stays usable.
        disk.BadRange = (100 * 512, 101 * 512);
        Assert.Equal(1, Submit(rig, VirtioBlock.TypeIn, 99, 1024, dataWritable: true));
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeIn, 98, 1024, dataWritable: true));
        Assert.Empty(disk.Violations);
        Assert.False(rig.NeedsReset);
        Assert.Empty(rig.Errors);
    }

    [Fact]
    public void ReadOnlyDiskRefusesModification()
    {
        var disk = new MemoryBackend(DiskSectors, readOnly: true);
        var device = new VirtioBlock(disk);
        Assert.NotEqual(0UL, device.DeviceFeatures & VirtioBlock.FeatureRo);
        Assert.Equal(0UL, device.DeviceFeatures & VirtioBlock.FeatureDiscard);
        using var rig = new Rig(_mem, device);
        Assert.Equal(1, Submit(rig, VirtioBlock.TypeOut, 0, 512));
        Segment(0, 1, 0);
        Assert.Equal(1, Submit(rig, VirtioBlock.TypeWriteZeroes, 0, 16));
        Assert.Equal(2, Submit(rig, VirtioBlock.TypeDiscard, 0, 16));
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeFlush, 0));
        Assert.Equal(0, Submit(rig, VirtioBlock.TypeIn, 0, 512, dataWritable: true));
        Assert.Empty(disk.Violations);
    }

    [Fact]
    public void ConfigSpaceDescribesTheDisk()
    {
        var device = new VirtioBlock(new MemoryBackend(DiskSectors));
        var c = new byte[VirtioBlock.ConfigBytes];
        device.ReadConfig(0, c);
        Assert.Equal((ulong)DiskSectors, BinaryPrimitives.ReadUInt64LittleEndian(c));
        Assert.Equal(VirtioBlock.SegMax, BinaryPrimitives.ReadUInt32LittleEndian(c.AsSpan(12)));
        Assert.Equal(512u, BinaryPrimitives.ReadUInt32LittleEndian(c.AsSpan(20)));
        Assert.Equal(VirtioBlock.MaxDiscardSectors, BinaryPrimitives.ReadUInt32LittleEndian(c.AsSpan(36)));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(c.AsSpan(40)));
        Assert.Equal(VirtioBlock.MaxDiscardSectors, BinaryPrimitives.ReadUInt32LittleEndian(c.AsSpan(48)));
        Assert.Equal(1, c[56]);
        Span<byte> tail = stackalloc byte[8];
        device.ReadConfig(VirtioBlock.ConfigBytes - 4, tail); // partly beyond the end: zero-filled, no exception
        Assert.Throws<ArgumentException>(() => new VirtioBlock(new MemoryBackend(1), "123456789012345678901"));
    }

    [Fact]
    public void MalformedChainsNeedReset()
    {
        var disk = new MemoryBackend(DiskSectors);
        using var rig = new Rig(_mem, new VirtioBlock(disk));
        // Header too short.
        rig.Ring.SetDesc(0, HeaderAt, 8, VirtQueue.DescFlagNext, 1);
        rig.Ring.SetDesc(1, StatusAt, 1, VirtQueue.DescFlagWrite);
        rig.Ring.Offer(0);
        rig.Drv.Notify(0);
        Assert.True(rig.NeedsReset);
        Assert.Contains(rig.Errors, e => e.Contains("16-byte request header"));
        // After a reset: no status byte (the chain ends in a readable buffer).
        rig.Drv.WriteStatus(0);
        rig.Errors.Clear();
        rig.Start(_mem);
        Header(VirtioBlock.TypeOut, 0);
        rig.Ring.SetDesc(0, HeaderAt, 16, VirtQueue.DescFlagNext, 1);
        rig.Ring.SetDesc(1, DataAt, 512, 0);
        rig.Ring.Offer(0);
        rig.Drv.Notify(0);
        Assert.True(rig.NeedsReset);
        Assert.Contains(rig.Errors, e => e.Contains("status byte"));
        Assert.Equal(0, disk.Calls);
    }

    // ---------------------------------------------------------------- fuzzing

    private readonly record struct Buf(ulong Addr, uint Len, bool Writable);

    private static ulong RandomSector(Random rng) => rng.Next(8) switch
    {
        0 => (ulong)rng.NextInt64(),
        1 => ulong.MaxValue / 512 + (ulong)rng.Next(0, 3) - 1,
        2 => (ulong)rng.Next(DiskSectors - 4, DiskSectors + 4),
        _ => (ulong)rng.Next(0, DiskSectors),
    };

    private static uint RandomDataLength(Random rng) => rng.Next(6) switch
    {
        0 => (uint)rng.Next(0, 2000),
        1 => 0,
        _ => 512u * (uint)rng.Next(1, 9),
    };

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, true)]
    public void RandomRequestsKeepTheDiskConsistent(int seed, bool readOnly)
    {
        var rng = new Random(seed);
        var disk = new MemoryBackend(DiskSectors, readOnly);
        new Random(seed + 100).NextBytes(disk.Data);
        var shadow = (byte[])disk.Data.Clone();
        var device = new VirtioBlock(disk, "fuzz");
        using var rig = new Rig(_mem, device);
        int ok = 0, failed = 0, resets = 0, logged = 0;
        var bufs = new List<Buf>();

        for (int iteration = 0; iteration < 4000; iteration++)
        {
            disk.BadRange = rng.Next(10) == 0 ? ((ulong)rng.Next(0, DiskSectors) * 512, (ulong)rng.Next(0, DiskSectors) * 512 + 512) : null;
            uint type = rng.Next(10) switch
            {
                0 => VirtioBlock.TypeIn, 1 => VirtioBlock.TypeIn, 2 => VirtioBlock.TypeOut, 3 => VirtioBlock.TypeOut, 4 => VirtioBlock.TypeFlush,
                5 => VirtioBlock.TypeGetId, 6 => VirtioBlock.TypeDiscard, 7 => VirtioBlock.TypeWriteZeroes, _ => (uint)rng.Next(0, 20),
            };
            bool writesData = type is VirtioBlock.TypeIn or VirtioBlock.TypeGetId;
            ulong sector = RandomSector(rng);
            Header(type, sector);

            // Build the chain: header (maybe split or short), data buffers, status (maybe merged, missing, wrong).
            bufs.Clear();
            if (rng.Next(12) == 0) bufs.Add(new Buf(HeaderAt, (uint)rng.Next(0, 16), false));
            else if (rng.Next(4) == 0) { bufs.Add(new Buf(HeaderAt, 8, false)); bufs.Add(new Buf(HeaderAt + 8, 8, false)); }
            else bufs.Add(new Buf(HeaderAt, 16, false));
            int dataBuffers = rng.Next(0, 4);
            for (int i = 0; i < dataBuffers; i++)
            {
                bool writable = rng.Next(8) == 0 ? !writesData : writesData;
                ulong addr = DataAt + 0x20000UL * (ulong)i;
                uint len = type is VirtioBlock.TypeDiscard or VirtioBlock.TypeWriteZeroes && !writable && rng.Next(4) != 0 ? 16u * (uint)rng.Next(0, 3) : RandomDataLength(rng);
                if (rng.Next(40) == 0) addr = rng.Next(2) == 0 ? RamBytes - 8 : (ulong)rng.NextInt64();
                bufs.Add(new Buf(addr, len, writable));
                if (type is VirtioBlock.TypeDiscard or VirtioBlock.TypeWriteZeroes)
                {
                    // A plausible segment most of the time.
                    if (_mem.IsValidRange(addr, 16))
                    {
                        _mem.WriteUInt64(addr, RandomSector(rng));
                        _mem.WriteUInt32(addr + 8, rng.Next(6) == 0 ? (uint)rng.NextInt64(0, uint.MaxValue) : (uint)rng.Next(0, 16));
                        _mem.WriteUInt32(addr + 12, rng.Next(4) == 0 ? (uint)rng.Next(0, 8) : 0);
                    }
                }
                else if (!writable && _mem.IsValidRange(addr, len)) rng.NextBytes(_mem.GetWritableSpan(addr, (int)len));
            }
            switch (rng.Next(16))
            {
                case 0: break;                                                       // no status buffer
                case 1: bufs.Add(new Buf(StatusAt, 0, true)); break;                 // empty status buffer
                case 2: bufs.Add(new Buf(StatusAt, 1, false)); break;                // readable "status"
                case 3 when bufs[^1].Writable && bufs[^1].Len > 0: bufs[^1] = bufs[^1] with { Len = bufs[^1].Len + 1 }; break; // merged with the data
                case 4: bufs.Add(new Buf(StatusAt, (uint)rng.Next(2, 64), true)); break;
                default: bufs.Add(new Buf(StatusAt, 1, true)); break;
            }
            foreach (var b in bufs) if (b.Writable && _mem.IsValidRange(b.Addr, b.Len)) _mem.Fill(b.Addr, (int)b.Len, 0xEE);

            // Descriptors: direct, or (sometimes) one indirect table.
            bool indirect = rng.Next(5) == 0 && bufs.Count > 0;
            ulong table = indirect ? IndirectAt : rig.Ring.Desc;
            for (int i = 0; i < bufs.Count; i++)
            {
                ushort flags = (ushort)((bufs[i].Writable ? VirtQueue.DescFlagWrite : 0) | (i + 1 < bufs.Count ? VirtQueue.DescFlagNext : 0));
                rig.Ring.SetDesc(i, bufs[i].Addr, bufs[i].Len, flags, (ushort)(i + 1), indirect ? table : null);
            }
            if (indirect) rig.Ring.SetDesc(0, IndirectAt, 16u * (uint)bufs.Count, VirtQueue.DescFlagIndirect);
            else if (bufs.Count == 0) continue;

            ushort usedBefore = rig.Ring.UsedIdx;
            rig.Ring.Offer(0);
            rig.Drv.Notify(0);

            if (rig.NeedsReset)
            {
                Assert.Equal(usedBefore, rig.Ring.UsedIdx);
                // Each reset is logged, until the transport's rate limiter (a guest can repeat this at exit rate) kicks in.
                if (logged < KvmPS.Devices.DeviceLog.DefaultBurst) Assert.NotEmpty(rig.Errors);
                logged += rig.Errors.Count;
                resets++;
                rig.Errors.Clear();
                rig.Drv.WriteStatus(0);
                Assert.Equal(0, rig.T.Status);
                rig.Start(_mem);
            }
            else
            {
                Assert.Empty(rig.Errors);
                Assert.Equal((ushort)(usedBefore + 1), rig.Ring.UsedIdx);
                var last = bufs[^1];
                byte status = _mem.ReadByte(last.Addr + last.Len - 1);
                // The header is the first 16 readable bytes, wherever they are (a short header buffer borrows from the data).
                var header = ReadableStream(bufs);
                type = BinaryPrimitives.ReadUInt32LittleEndian(header);
                sector = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(8));
                Assert.True(status <= 2, $"status {status}");
                if (status == 0)
                {
                    ok++;
                    Apply(type, sector, bufs, shadow, disk);
                }
                else
                {
                    failed++;
                    // A backend failure may have done part of the request, but only inside its own range; re-sync that.
                    if (disk.BadRange is not null) ResyncRequestRange(type, sector, bufs, shadow, disk);
                }
            }
            Assert.Empty(disk.Violations);
            Assert.True(shadow.AsSpan().SequenceEqual(disk.Data), $"iteration {iteration}: the disk changed outside completed requests (type {type}, sector {sector})");
        }
        Assert.True(ok > 300, $"only {ok} successful requests");
        Assert.True(failed > 300, $"only {failed} failed requests");
        Assert.True(resets > 100, $"only {resets} resets");
    }

    /// <summary>All device-readable bytes of the chain, in order (what the device parses: header, then data).</summary>
    private byte[] ReadableStream(List<Buf> bufs)
    {
        var ms = new MemoryStream();
        foreach (var b in bufs) if (!b.Writable && b.Len > 0) ms.Write(_mem.GetReadOnlySpan(b.Addr, (int)b.Len));
        return ms.ToArray();
    }

    private byte[] ReadableAfterHeader(List<Buf> bufs) => ReadableStream(bufs)[16..];

    private byte[] WritableBeforeStatus(List<Buf> bufs)
    {
        var ms = new MemoryStream();
        foreach (var b in bufs) if (b.Writable && b.Len > 0) ms.Write(_mem.GetReadOnlySpan(b.Addr, (int)b.Len));
        return ms.ToArray()[..^1];
    }

    private void Apply(uint type, ulong sector, List<Buf> bufs, byte[] shadow, MemoryBackend disk)
    {
        switch (type)
        {
            case VirtioBlock.TypeOut:
            {
                var data = ReadableAfterHeader(bufs);
                Assert.True(data.Length % 512 == 0 && sector * 512 + (ulong)data.Length <= (ulong)shadow.Length);
                data.CopyTo(shadow, (int)(sector * 512));
                break;
            }
            case VirtioBlock.TypeIn:
            {
                var data = WritableBeforeStatus(bufs);
                Assert.True(data.Length % 512 == 0);
                Assert.Equal(shadow.AsSpan((int)(sector * 512), data.Length).ToArray(), data);
                break;
            }
            case VirtioBlock.TypeGetId:
            {
                var data = WritableBeforeStatus(bufs);
                int n = Math.Min(data.Length, 20);
                Assert.Equal("fuzz\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"u8[..n].ToArray(), data[..n]);
                break;
            }
            case VirtioBlock.TypeDiscard or VirtioBlock.TypeWriteZeroes:
            {
                var seg = ReadableAfterHeader(bufs);
                Assert.Equal(16, seg.Length);
                ulong s = BinaryPrimitives.ReadUInt64LittleEndian(seg);
                uint count = BinaryPrimitives.ReadUInt32LittleEndian(seg.AsSpan(8));
                Assert.True(s * 512 + count * 512UL <= (ulong)shadow.Length);
                Array.Clear(shadow, (int)(s * 512), (int)(count * 512));
                break;
            }
            case VirtioBlock.TypeFlush: break;
            default: Assert.Fail($"request type {type} completed OK"); break;
        }
    }

    private void ResyncRequestRange(uint type, ulong sector, List<Buf> bufs, byte[] shadow, MemoryBackend disk)
    {
        ulong start, length;
        if (type == VirtioBlock.TypeOut) { start = sector * 512; length = (ulong)ReadableAfterHeader(bufs).Length; }
        else if (type is VirtioBlock.TypeDiscard or VirtioBlock.TypeWriteZeroes && ReadableAfterHeader(bufs) is { Length: 16 } seg)
        {
            start = BinaryPrimitives.ReadUInt64LittleEndian(seg) * 512;
            length = BinaryPrimitives.ReadUInt32LittleEndian(seg.AsSpan(8)) * 512UL;
        }
        else return;
        if (start >= (ulong)shadow.Length) return;
        length = Math.Min(length, (ulong)shadow.Length - start);
        disk.Data.AsSpan((int)start, (int)length).CopyTo(shadow.AsSpan((int)start));
    }
}
