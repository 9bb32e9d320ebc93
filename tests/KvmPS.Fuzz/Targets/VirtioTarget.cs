using System.Buffers.Binary;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Balloon;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Virtio.Net;
using KvmPS.Devices.Virtio.Rng;
using KvmPS.Devices.Virtio.Vsock;
using KvmPS.Engine.Tests.Devices;
using KvmPS.Vm;

namespace KvmPS.Fuzz.Targets;

/// <summary>
/// One virtio device behind the real <see cref="VirtioPciTransport"/>, driven the way the engine's unit tests drive it
/// (TestDriver, TestRing, MemoryBackend and FakeNetBackend are those tests' own files), against a fake guest RAM.
/// The input is a 24-byte header and guest memory:
/// <code>
///   0..8   driver features (masked by what the device offers; VERSION_1 always)
///   8      queue size, log2 (clamped to the device's maximum)
///   9      notification rounds (1..4); every enabled queue is notified each round
///   10     device config write: offset    11  length (0..8)    12..20  value
///   20..24 reserved
///   24..   copied to guest RAM at 0x1000: queue q's descriptor table, avail and used rings at 0x1000 + q * 0x200,
///          request headers and data wherever the descriptors point (the seeds put them from 0x1C00, and buffers the
///          device only writes from 0x20000, outside the input)
/// </code>
/// Invariants: no exception leaves the transport, the block device never asks the disk for anything outside it, and
/// the device ends either working or in NEEDS_RESET (a malformed request is the guest's fault, never the host's).
/// </summary>
internal sealed class VirtioTarget : IFuzzTarget, IDisposable
{
    public const int HeaderBytes = 24;
    public const ulong RingBase = 0x1000, RingStride = 0x200, DataBase = 0x1C00, SpaceBase = 0x20000;
    private const ulong RamBytes = 16UL << 20; // GuestMemory's minimum
    public const int ArenaBytes = 0x40000;    // cleared before each input; the input lands in it from RingBase
    private const int DiskSectors = 64;

    private readonly string _kind;
    private readonly GuestMemory _mem = GuestMemory.Create(RamBytes);
    private readonly MemoryBackend? _disk;
    private readonly FakeNetBackend? _net;
    private readonly VirtioPciTransport _t;
    private readonly TestDriver _drv;
    private readonly string? _dir;

    public VirtioTarget(string kind)
    {
        _kind = kind;
        IVirtioDevice device;
        switch (kind)
        {
            case "block":
                _disk = new MemoryBackend(DiskSectors);
                device = new VirtioBlock(_disk, "fuzz-serial");
                break;
            case "net":
                _net = new FakeNetBackend();
                device = new VirtioNet(_net, [0x52, 0x54, 0x00, 0x12, 0x34, 0x56], 1500);
                break;
            case "rng": device = new VirtioRng(); break;
            case "balloon": device = new VirtioBalloon(_mem, deflateOnOom: true, statsIntervalSeconds: 0, log: _ => { }); break;
            case "vsock":
                _dir = Path.Combine(Path.GetTempPath(), $"kvmps-fuzz-vsock-{Environment.ProcessId}");
                Directory.CreateDirectory(_dir);
                device = new VirtioVsock(_mem, 3, Path.Combine(_dir, "v.sock"), _ => { });
                break;
            default: throw new ArgumentException($"no virtio device '{kind}'");
        }
        _t = new VirtioPciTransport(device, _mem) { ErrorLog = _ => { } };
        _drv = new TestDriver(_t);
    }

    public string Name => _kind;
    public string Description => $"virtio-{_kind} requests through the virtqueue and the PCI transport (Devices/Virtio)";
    public int QueueCount => _t.Device.QueueCount;

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length < HeaderBytes) return;
        _drv.WriteStatus(0);
        if (_t.Status != 0) throw new FuzzInvariantException($"status {_t.Status} after reset");
        _mem.Fill(0, ArenaBytes, 0);
        var body = input[HeaderBytes..];
        if (body.Length > ArenaBytes - (int)RingBase) body = body[..(ArenaBytes - (int)RingBase)];
        body.CopyTo(_mem.GetWritableSpan(RingBase, body.Length));
        if (_disk is not null) Array.Clear(_disk.Data);
        _net?.Incoming.Clear();
        _net?.Incoming.Enqueue(input[..Math.Min(input.Length, 74)].ToArray()); // something to receive

        ulong want = BinaryPrimitives.ReadUInt64LittleEndian(input) & _drv.DeviceFeatures();
        if (!_drv.Negotiate(want & ~VirtioFeatures.Version1)) return;
        int queues = Math.Min(QueueCount, 6);
        for (int q = 0; q < queues; q++)
        {
            ushort max = _t.Device.MaxQueueSize(q);
            ushort size = (ushort)Math.Min(1 << Math.Min(input[8] & 15, 15), max);
            _drv.SetupQueue((ushort)q, new TestRing(_mem, size, RingBase + RingStride * (ulong)q));
        }
        if (input[11] is > 0 and <= 8)
            _drv.Write(VirtioPciTransport.DeviceCfgOffset + input[10], input[11] is 1 or 2 or 4 or 8 ? input[11] : 4, BinaryPrimitives.ReadUInt64LittleEndian(input[12..]));
        _drv.DriverOk();
        int rounds = 1 + (input[9] & 3);
        for (int r = 0; r < rounds && (_t.Status & VirtioStatus.NeedsReset) == 0; r++)
            for (int q = 0; q < queues; q++) _drv.Notify((ushort)q);
        _net?.ReceiveReady?.Invoke();
        if (_disk is not null && _disk.Violations.Count > 0)
            throw new FuzzInvariantException("virtio-blk asked the disk for: " + string.Join("; ", _disk.Violations));
        _disk?.Violations.Clear();
    }

    public void Dispose()
    {
        _t.Dispose();
        _mem.Dispose();
        if (_dir is not null) try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    // ------------------------------------------------------------------ seeds

    /// <summary>Builds an input: header + guest memory from RingBase, with chains written through TestRing.</summary>
    internal sealed class SeedBuilder : IDisposable
    {
        private readonly GuestMemory _m = GuestMemory.Create(RamBytes);
        private readonly TestRing[] _rings;
        private readonly byte[] _header = new byte[HeaderBytes];
        private ulong _next = DataBase;
        private ulong _end = DataBase;
        private ulong _space = SpaceBase;

        /// <summary>Room for a buffer the device only writes: outside the input (guest RAM there is zero).</summary>
        public ulong Space(int length) { ulong at = _space; _space = (_space + (ulong)length + 15) & ~15UL; return at; }

        public SeedBuilder(ulong features, int sizeLog2, int queues)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(_header, features);
            _header[8] = (byte)sizeLog2;
            _rings = Enumerable.Range(0, queues).Select(q => new TestRing(_m, (ushort)(1 << sizeLog2), RingBase + RingStride * (ulong)q)).ToArray();
        }

        public TestRing Ring(int q) => _rings[q];

        /// <summary>Places data in guest memory; returns its address.</summary>
        public ulong Data(ReadOnlySpan<byte> bytes, int reserve = 0)
        {
            ulong at = _next;
            bytes.CopyTo(_m.GetWritableSpan(at, bytes.Length));
            _next = (at + (ulong)Math.Max(bytes.Length, reserve) + 15) & ~15UL;
            _end = Math.Max(_end, _next);
            return at;
        }

        /// <summary>Offers one chain of (address, length, writable) buffers on queue q, from descriptor index first.</summary>
        public void Chain(int q, int first, params (ulong Addr, uint Len, bool Writable)[] bufs)
        {
            for (int i = 0; i < bufs.Length; i++)
            {
                ushort flags = (ushort)((bufs[i].Writable ? VirtQueue.DescFlagWrite : 0) | (i + 1 < bufs.Length ? VirtQueue.DescFlagNext : 0));
                _rings[q].SetDesc(first + i, bufs[i].Addr, bufs[i].Len, flags, (ushort)(first + i + 1));
            }
            _rings[q].Offer((ushort)first);
        }

        public void ConfigWrite(byte offset, byte length, ulong value)
        {
            _header[10] = offset; _header[11] = length;
            BinaryPrimitives.WriteUInt64LittleEndian(_header.AsSpan(12), value);
        }

        public byte[] Build()
        {
            ulong end = Math.Max(_end, RingBase + RingStride * (ulong)_rings.Length);
            var input = new byte[HeaderBytes + (int)(end - RingBase)];
            _header.CopyTo(input, 0);
            _m.GetReadOnlySpan(RingBase, (int)(end - RingBase)).CopyTo(input.AsSpan(HeaderBytes));
            return input;
        }

        public void Dispose() => _m.Dispose();
    }

    public IEnumerable<(string, byte[])> Seeds()
    {
        const ulong ring = VirtioFeatures.RingEventIdx | VirtioFeatures.RingIndirectDesc;
        var list = new List<(string, byte[])>();
        void Add(string name, ulong features, int queues, Action<SeedBuilder> build)
        {
            using var s = new SeedBuilder(features, 3, queues);
            build(s);
            list.Add((name, s.Build()));
        }
        byte[] zeros = new byte[512];
        switch (_kind)
        {
            case "block":
            {
                byte[] Hdr(uint type, ulong sector) { var h = new byte[16]; BinaryPrimitives.WriteUInt32LittleEndian(h, type); BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(8), sector); return h; }
                ulong all = ~0UL;
                foreach (var (name, type, sector, len, writable) in new (string, uint, ulong, uint, bool)[]
                {
                    ("read", VirtioBlock.TypeIn, 1, 1024, true), ("write", VirtioBlock.TypeOut, 2, 512, false), ("flush", VirtioBlock.TypeFlush, 0, 0, false),
                    ("get-id", VirtioBlock.TypeGetId, 0, 20, true), ("read-end", VirtioBlock.TypeIn, DiskSectors - 1, 1024, true),
                })
                    Add($"blk-{name}", all, 1, s =>
                    {
                        var bufs = new List<(ulong, uint, bool)> { (s.Data(Hdr(type, sector)), 16, false) };
                        if (len > 0) bufs.Add((writable ? s.Space((int)len) : s.Data(new byte[len]), len, writable));
                        bufs.Add((s.Data([0xEE]), 1, true));
                        s.Chain(0, 0, bufs.ToArray());
                    });
                foreach (var (name, type) in new[] { ("discard", VirtioBlock.TypeDiscard), ("write-zeroes", VirtioBlock.TypeWriteZeroes) })
                    Add($"blk-{name}", all, 1, s =>
                    {
                        var seg = new byte[16]; BinaryPrimitives.WriteUInt64LittleEndian(seg, 4); BinaryPrimitives.WriteUInt32LittleEndian(seg.AsSpan(8), 2);
                        s.Chain(0, 0, (s.Data(Hdr(type, 0)), 16, false), (s.Data(seg), 16, false), (s.Data([0xEE]), 1, true));
                    });
                Add("blk-two-requests", all, 1, s =>
                {
                    s.Chain(0, 0, (s.Data(Hdr(VirtioBlock.TypeOut, 3)), 16, false), (s.Data(zeros), 512, false), (s.Data([0xEE]), 1, true));
                    s.Chain(0, 3, (s.Data(Hdr(VirtioBlock.TypeIn, 3)), 16, false), (s.Space(512), 512, true), (s.Data([0xEE]), 1, true));
                });
                Add("blk-indirect", all, 1, s =>
                {
                    ulong h = s.Data(Hdr(VirtioBlock.TypeIn, 0)), d = s.Space(512), st = s.Data([0xEE]);
                    var table = new byte[48];
                    void Desc(int i, ulong a, uint l, ushort f, ushort n) { BinaryPrimitives.WriteUInt64LittleEndian(table.AsSpan(16 * i), a); BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(16 * i + 8), l); BinaryPrimitives.WriteUInt16LittleEndian(table.AsSpan(16 * i + 12), f); BinaryPrimitives.WriteUInt16LittleEndian(table.AsSpan(16 * i + 14), n); }
                    Desc(0, h, 16, VirtQueue.DescFlagNext, 1); Desc(1, d, 512, VirtQueue.DescFlagNext | VirtQueue.DescFlagWrite, 2); Desc(2, st, 1, VirtQueue.DescFlagWrite, 0);
                    ulong t = s.Data(table);
                    s.Ring(0).SetDesc(0, t, 48, VirtQueue.DescFlagIndirect);
                    s.Ring(0).Offer(0);
                });
                Add("blk-config-wce", all, 1, s => { s.ConfigWrite(32, 1, 1); s.Chain(0, 0, (s.Data(Hdr(VirtioBlock.TypeFlush, 0)), 16, false), (s.Data([0xEE]), 1, true)); });
                break;
            }
            case "net":
                Add("net-rx-tx", ~0UL, 3, s =>
                {
                    s.Chain(0, 0, (s.Space(1526), 1526, true));
                    var pkt = new byte[12 + 60]; pkt[12] = 0xff;
                    s.Chain(1, 0, (s.Data(pkt), (uint)pkt.Length, false));
                });
                Add("net-tx-split", ring, 2, s => s.Chain(1, 0, (s.Data(new byte[12]), 12, false), (s.Data(new byte[60]), 60, false)));
                Add("net-ctrl", ~0UL, 3, s => s.Chain(2, 0, (s.Data([0, 0]), 2, false), (s.Data([1]), 1, false), (s.Data([0xEE]), 1, true)));
                Add("net-rx-small", ring, 1, s => s.Chain(0, 0, (s.Space(8), 8, true)));
                break;
            case "rng":
                Add("rng-64", ring, 1, s => s.Chain(0, 0, (s.Space(64), 64, true)));
                Add("rng-two", ring, 1, s => { s.Chain(0, 0, (s.Space(16), 16, true)); s.Chain(0, 1, (s.Space(256), 256, true), (s.Space(32), 32, true)); });
                Add("rng-readable", 0, 1, s => s.Chain(0, 0, (s.Data(new byte[16]), 16, false)));
                break;
            case "balloon":
            {
                byte[] Pfns(params uint[] p) { var b = new byte[4 * p.Length]; for (int i = 0; i < p.Length; i++) BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4 * i), p[i]); return b; }
                Add("balloon-inflate", ~0UL, 3, s => { var p = Pfns(100, 101, 102); s.Chain(0, 0, (s.Data(p), (uint)p.Length, false)); });
                Add("balloon-deflate", ~0UL, 3, s => { var p = Pfns(100, 0xFFFFFFFF); s.Chain(0, 0, (s.Data(p), (uint)p.Length, false)); s.Chain(1, 0, (s.Data(p), (uint)p.Length, false)); });
                Add("balloon-stats", ~0UL, 3, s => { var st = new byte[20]; st[0] = 4; st[2] = 0x10; s.Chain(2, 0, (s.Data(st), 20, false)); });
                Add("balloon-config", ~0UL, 3, s => s.ConfigWrite(4, 4, 256));
                break;
            }
            case "vsock":
            {
                byte[] Pkt(ulong src, ulong dst, uint srcPort, uint dstPort, uint len, ushort op, uint bufAlloc = 65536)
                {
                    var h = new byte[44];
                    BinaryPrimitives.WriteUInt64LittleEndian(h, src); BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(8), dst);
                    BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(16), srcPort); BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(20), dstPort);
                    BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(24), len); BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(28), 1);
                    BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(30), op); BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(36), bufAlloc);
                    return h;
                }
                foreach (var (name, op) in new (string, ushort)[] { ("request", 1), ("response", 2), ("rst", 3), ("shutdown", 4), ("rw", 5), ("credit-update", 6), ("credit-request", 7) })
                    Add($"vsock-{name}", ~0UL, 3, s =>
                    {
                        s.Chain(0, 0, (s.Space(44 + 64), 44 + 64, true));
                        var h = Pkt(3, 2, 1234, 5000, op == 5 ? 5u : 0, op);
                        if (op == 5) s.Chain(1, 0, (s.Data(h), 44, false), (s.Data("hello"u8), 5, false));
                        else s.Chain(1, 0, (s.Data(h), 44, false));
                    });
                Add("vsock-event", ~0UL, 3, s => s.Chain(2, 0, (s.Space(4), 4, true)));
                break;
            }
        }
        return list;
    }
}

/// <summary>The split virtqueue alone (VirtQueue.Pop/PushUsed and the chain copies), without a device or transport.</summary>
internal sealed class VirtQueueTarget : IFuzzTarget, IDisposable
{
    private const ulong RamBytes = 16UL << 20; // GuestMemory's minimum
    public const int ArenaBytes = 0x40000;    // cleared before each input; the input lands in it from RingBase
    private readonly GuestMemory _mem = GuestMemory.Create(RamBytes);
    private readonly DescriptorChain _chain = new();
    private readonly byte[] _scratch = new byte[64];

    public string Name => "virtqueue";
    public string Description => "split virtqueue: descriptor table, indirect tables, avail/used rings, event index (Devices/Virtio/VirtQueue)";

    /// <summary>Header: [0] size log2, [1] flags (1 = EVENT_IDX, 2 = INDIRECT_DESC); then guest RAM from 0x1000 as in <see cref="VirtioTarget"/>.</summary>
    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length < VirtioTarget.HeaderBytes) return;
        _mem.Fill(0, VirtioTarget.ArenaBytes, 0);
        var body = input[VirtioTarget.HeaderBytes..];
        if (body.Length > VirtioTarget.ArenaBytes - (int)VirtioTarget.RingBase) body = body[..(VirtioTarget.ArenaBytes - (int)VirtioTarget.RingBase)];
        body.CopyTo(_mem.GetWritableSpan(VirtioTarget.RingBase, body.Length));
        ushort size = (ushort)(1 << Math.Min(input[8] & 15, 15));
        var ring = new TestRing(_mem, size, VirtioTarget.RingBase);
        var q = VirtQueue.TryCreate(_mem, size, ring.Desc, ring.Avail, ring.Used, (input[0] & 1) != 0, (input[0] & 2) != 0, out _);
        if (q is null) return;
        for (int step = 0; step < 2 * size + 2; step++)
        {
            var result = q.Pop(_chain);
            if (result == PopResult.Empty) break;
            if (result == PopResult.Error)
            {
                if (!q.IsBroken || q.Error is null) throw new FuzzInvariantException("Pop returned Error on a queue that is not broken");
                break;
            }
            foreach (var b in _chain.Buffers)
                if (b.Length != 0 && !_mem.IsValidRange(b.Address, b.Length)) throw new FuzzInvariantException($"buffer 0x{b.Address:x}+{b.Length} escaped guest RAM");
            if (_chain.ReadableBytes + _chain.WritableBytes > q.MaxChainBytes) throw new FuzzInvariantException("chain longer than MaxChainBytes");
            _chain.WriteTo(_mem, 0, _scratch);
            _chain.ReadFrom(_mem, 0, _scratch);
            q.PushUsed(_chain.Head, (uint)Math.Min(_chain.WritableBytes, 64));
            q.ShouldInterrupt();
            q.EnableNotifications();
        }
    }

    public IEnumerable<(string, byte[])> Seeds()
    {
        using var s = new VirtioTarget.SeedBuilder(VirtioFeatures.RingEventIdx | VirtioFeatures.RingIndirectDesc, 3, 1);
        s.Chain(0, 0, (s.Data(new byte[16]), 16, false), (s.Space(512), 512, true), (s.Data([0xEE]), 1, true));
        s.Chain(0, 3, (s.Data(new byte[8]), 8, false));
        var a = s.Build();
        a[0] = 3;
        yield return ("two-chains", a);
        using var t = new VirtioTarget.SeedBuilder(0, 0, 1);
        t.Chain(0, 0, (t.Space(64), 64, true));
        yield return ("one-desc", t.Build());
    }

    public void Dispose() => _mem.Dispose();
}
