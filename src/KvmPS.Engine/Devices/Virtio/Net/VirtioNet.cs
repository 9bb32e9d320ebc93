using System.Buffers.Binary;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Devices.Virtio.Net;

/// <summary>
/// virtio network device (type 1) over an <see cref="INetBackend"/> (a tap). Queues: receive (0) and transmit (1);
/// no control queue, no multiqueue. Features: MAC, STATUS (link always up), MRG_RXBUF, and MTU when configured.
/// No checksum/GSO features are offered, so every virtio_net_hdr is plain (flags 0, GSO_NONE): the device zeroes
/// the header fields both ways and only fills in num_buffers.
/// <para>
/// Receive: the back-end raises <see cref="INetBackend.ReceiveReady"/> on its own thread (one-shot); the device
/// then takes the transport's lock (as a queue notification would) and copies packets into guest buffers. A packet
/// that finds too few buffers is kept (with the chains already popped) until the driver adds more and notifies
/// the receive queue; meanwhile the back-end is not re-armed, so nothing spins and the kernel queues (and, past its
/// queue length, drops) further frames. Packets the device cannot deliver at all are counted in
/// <see cref="RxDropped"/>.
/// </para>
/// </summary>
public sealed class VirtioNet : IVirtioDevice, IDeviceControl, IPersistent, IPausable
{
    public const ushort QueueSize = 256;
    public const int RxQueue = 0, TxQueue = 1;
    public const ulong FeatureMtu = 1UL << 3, FeatureMac = 1UL << 5, FeatureMrgRxBuf = 1UL << 15, FeatureStatus = 1UL << 16;
    public const ushort StatusLinkUp = 1;
    /// <summary>struct virtio_net_hdr with num_buffers (VERSION_1 / MRG_RXBUF): 12 bytes.</summary>
    public const int HeaderSize = 12;
    /// <summary>Largest Ethernet frame handled (64 KiB IP packet + Ethernet and VLAN headers).</summary>
    public const int MaxFrame = 65535 + 18;
    public const int MaxPacket = HeaderSize + MaxFrame;
    public const int ConfigBytes = 12; // mac[6], status, max_virtqueue_pairs, mtu

    private INetBackend _backend; // replaced once, before the VM runs: a live upgrade's tap (AdoptBackend)
    private readonly byte[] _mac;
    private readonly ushort? _mtu;
    private readonly byte[] _rxPacket = new byte[MaxPacket];
    private readonly byte[] _txPacket = new byte[MaxPacket];
    private readonly DescriptorChain _txChain = new();
    private readonly List<DescriptorChain> _held = new();   // popped rx chains not yet used
    private readonly Stack<DescriptorChain> _spare = new();
    private ulong _heldBytes;
    private int _pendingLen;                                  // a received packet waiting for rx buffers
    private volatile IVirtioContext? _active;
    private volatile bool _disposed;
    private readonly object _pauseLock = new();
    private bool _paused, _rxDeferred; // while paused, tap readiness is remembered, not acted on
    private bool _announcePending;     // restored: announce the MAC once the VM runs (under _pauseLock)

    /// <summary>How many RARP announcements a restored or migrated device sends when the VM first runs (QEMU sends 5, spaced).</summary>
    public const int Announcements = 3;

    public string Name => "virtio-net";
    public ushort DeviceType => 1;
    public uint PciClassCode => 0x020000; // network controller, Ethernet
    public int QueueCount => 2;
    public ushort MaxQueueSize(int queue) => QueueSize;
    public ulong DeviceFeatures => FeatureMac | FeatureStatus | FeatureMrgRxBuf | (_mtu.HasValue ? FeatureMtu : 0);
    public int ConfigSize => ConfigBytes;
    public INetBackend Backend => _backend;
    public ReadOnlySpan<byte> Mac => _mac;

    // Counters (read without the lock: monotonic, approximate under concurrency).
    public long RxPackets { get; private set; }
    public long RxBytes { get; private set; }
    /// <summary>Packets received from the back-end that could not be given to the guest (too large, malformed, reset).</summary>
    public long RxDropped { get; private set; }
    /// <summary>Times a packet had to wait for the driver to add receive buffers.</summary>
    public long RxStalls { get; private set; }
    public long TxPackets { get; private set; }
    public long TxBytes { get; private set; }
    /// <summary>Guest packets not sent: shorter than the header, longer than <see cref="MaxPacket"/>, or refused by the back-end.</summary>
    public long TxDropped { get; private set; }

    public VirtioNet(INetBackend backend, ReadOnlySpan<byte> mac, ushort? mtu = null)
    {
        if (mac.Length != 6) throw new ArgumentException("a MAC address has 6 bytes", nameof(mac));
        _backend = backend;
        _mac = mac.ToArray();
        _mtu = mtu;
        _backend.ReceiveReady = OnReceiveReady;
    }

    /// <summary>A live upgrade's destination: built without its tap, which the running VMM hands over (<see cref="AdoptBackend"/>).</summary>
    public bool AwaitsBackend => _backend is PendingNetBackend;

    /// <summary>
    /// Puts the device on the tap the running VMM handed over, before any vCPU runs (the state is restored after this).
    /// The back-end is the device's from here; it must be the tap the device was built for.
    /// </summary>
    public void AdoptBackend(INetBackend backend)
    {
        if (_backend is not PendingNetBackend pending) throw new InvalidOperationException($"the tap '{_backend.Name}' is open already");
        if (!pending.Name.Contains('%') && backend.Name != pending.Name)
            throw new InvalidOperationException($"the tap handed over is '{backend.Name}', this device's '{pending.Name}'");
        _backend = backend;
        _backend.ReceiveReady = OnReceiveReady;
        if (_active is not null && !_disposed) _backend.ArmReceive();
    }

    public void ReadConfig(int offset, Span<byte> data)
    {
        Span<byte> cfg = stackalloc byte[ConfigBytes];
        _mac.CopyTo(cfg);
        BinaryPrimitives.WriteUInt16LittleEndian(cfg[6..], StatusLinkUp);
        BinaryPrimitives.WriteUInt16LittleEndian(cfg[8..], 1);
        BinaryPrimitives.WriteUInt16LittleEndian(cfg[10..], _mtu ?? 0);
        data.Clear();
        if (offset >= 0 && offset < ConfigBytes) cfg[offset..Math.Min(ConfigBytes, offset + data.Length)].CopyTo(data);
    }

    public void WriteConfig(int offset, ReadOnlySpan<byte> data) { } // the MAC is read-only without VIRTIO_NET_F_CTRL_MAC_ADDR

    public void Activate(IVirtioContext context)
    {
        _active = context;
        if (!_disposed) _backend.ArmReceive();
    }

    public void Reset()
    {
        _active = null;
        foreach (var c in _held) _spare.Push(c);
        _held.Clear();
        _heldBytes = 0;
        if (_pendingLen > 0) { RxDropped++; _pendingLen = 0; }
    }

    public void ProcessQueue(IVirtioContext context, int queue)
    {
        if (_disposed) return;
        if (queue == TxQueue) ProcessTx(context);
        else if (queue == RxQueue) ProcessRx(context);
    }

    /// <summary>The back-end has a packet: process the receive queue under the transport's lock, like a notification.</summary>
    private void OnReceiveReady()
    {
        if (_disposed) return;
        lock (_pauseLock)
        {
            if (_paused) { _rxDeferred = true; return; } // the tap is not read and no rx buffer written until Resume
        }
        if (_active is VirtioPciTransport t) t.HandleNotify(RxQueue);
        else if (_active is { } ctx) lock (this) ProcessRx(ctx); // a transport without its own lock (tests)
    }

    // ---- transmit ----
    private void ProcessTx(IVirtioContext ctx)
    {
        if (ctx.Queue(TxQueue) is not { } q) return;
        if (q.DrainAvailable(_txChain, (Device: this, Memory: ctx.Memory), static (s, chain) =>
            {
                s.Device.Transmit(s.Memory, chain);
                return 0u;
            }))
            ctx.NotifyUsed(TxQueue);
    }

    private void Transmit(GuestMemory memory, DescriptorChain chain)
    {
        ulong len = chain.ReadableBytes;
        if (len < HeaderSize || len > MaxPacket) { TxDropped++; return; }
        int n = chain.ReadFrom(memory, 0, _txPacket.AsSpan(0, (int)len));
        var packet = _txPacket.AsSpan(0, n);
        packet[..HeaderSize].Clear(); // no offloads negotiated: a plain header whatever the driver wrote
        if (n == (int)len && _backend.Send(packet)) { TxPackets++; TxBytes += n - HeaderSize; }
        else TxDropped++;
    }

    // ---- receive ----
    private enum Delivery { Done, Stalled, Broken }

    private void ProcessRx(IVirtioContext ctx)
    {
        if (ctx.Queue(RxQueue) is not { } q || q.IsBroken) return;
        bool mergeable = (ctx.NegotiatedFeatures & FeatureMrgRxBuf) != 0;
        bool used = false;
        while (true)
        {
            if (_pendingLen == 0)
            {
                int n = _backend.Receive(_rxPacket);
                if (n == 0) { _backend.ArmReceive(); break; } // drained: wait for the next packet
                if (n < HeaderSize + 14) { RxDropped++; continue; }
                _pendingLen = n;
            }
            var d = Deliver(ctx, q, mergeable, ref used);
            if (d == Delivery.Stalled) { RxStalls++; break; } // resumed by the driver's next rx notification
            if (d == Delivery.Broken) break;
        }
        if (used) ctx.NotifyUsed(RxQueue);
    }

    private DescriptorChain Rent() => _spare.Count > 0 ? _spare.Pop() : new DescriptorChain();

    private Delivery Deliver(IVirtioContext ctx, VirtQueue q, bool mergeable, ref bool used)
    {
        int need = _pendingLen;
        // Collect enough buffers: one chain without MRG_RXBUF, as many as it takes with it.
        while (mergeable ? _heldBytes < (ulong)need : _held.Count == 0)
        {
            if (_held.Count >= q.Size) { RxDropped++; _pendingLen = 0; return Delivery.Done; } // larger than the whole ring
            var c = Rent();
            var r = q.Pop(c);
            if (r != PopResult.Chain)
            {
                _spare.Push(c);
                if (r == PopResult.Error) return Delivery.Broken;
                if (q.EnableNotifications()) continue; // more arrived while we looked
                return Delivery.Stalled;
            }
            if (c.ReadableBytes > 0 || c.WritableBytes < HeaderSize)
            {
                _spare.Push(c);
                ctx.Fail($"receive queue: descriptor chain {c.Head} has {c.ReadableBytes} device-readable and {c.WritableBytes} device-writable bytes (needs only writable buffers of at least {HeaderSize} bytes)");
                return Delivery.Broken;
            }
            _held.Add(c);
            _heldBytes += c.WritableBytes;
        }
        if (!mergeable && _held[0].WritableBytes < (ulong)need) { RxDropped++; _pendingLen = 0; return Delivery.Done; } // keep the buffer for the next packet

        int chains = 0;
        for (ulong covered = 0; covered < (ulong)need; chains++) covered += _held[chains].WritableBytes;
        var packet = _rxPacket.AsSpan(0, need);
        packet[..10].Clear(); // no GUEST_CSUM/GSO negotiated: flags 0, GSO_NONE
        BinaryPrimitives.WriteUInt16LittleEndian(packet[10..], (ushort)chains);
        int offset = 0;
        for (int i = 0; i < chains; i++)
        {
            var c = _held[i];
            int n = (int)Math.Min(c.WritableBytes, (ulong)(need - offset));
            int written = c.WriteTo(ctx.Memory, 0, packet.Slice(offset, n));
            q.PushUsed(c.Head, (uint)written);
            offset += n;
            _heldBytes -= c.WritableBytes;
            _spare.Push(c);
        }
        _held.RemoveRange(0, chains);
        used = true;
        RxPackets++;
        RxBytes += need - HeaderSize;
        _pendingLen = 0;
        return Delivery.Done;
    }

    // ---- control: counters ----
    public IReadOnlyList<string> ControlRequests { get; } = [NetStatsRequest.Name];

    public JsonElement HandleControlRequest(ControlRequest request)
    {
        if (request is not NetStatsRequest) throw new ArgumentException($"virtio-net does not handle '{request.Request}'.");
        var reply = new NetStatsReply
        {
            Tap = _backend.Name,
            Mac = NetDeviceConfig.FormatMac(_mac),
            RxPackets = RxPackets,
            RxBytes = RxBytes,
            RxDropped = RxDropped,
            RxStalls = RxStalls,
            TxPackets = TxPackets,
            TxBytes = TxBytes,
            TxDropped = TxDropped,
        };
        return JsonSerializer.SerializeToElement(reply, ContractJsonContext.Default.NetStatsReply);
    }

    // ---- pause and state ----
    /// <summary>
    /// Stops receiving: tap readiness is only noted (the tap is not read, no receive buffer is written) until
    /// <see cref="Resume"/>. The transport's pause, which comes first, already waits for a receive in progress.
    /// </summary>
    public void Pause() { lock (_pauseLock) _paused = true; }

    public void Resume()
    {
        bool deferred, announce;
        lock (_pauseLock)
        {
            _paused = false;
            deferred = _rxDeferred;
            _rxDeferred = false;
            announce = _announcePending;
            _announcePending = false;
        }
        if (announce) Announce();
        if (deferred) OnReceiveReady();
    }

    /// <summary>
    /// After a restore or an incoming migration the guest runs behind a new tap, maybe on another host: the bridge or
    /// switch there has not seen its MAC, so frames for it would be flooded or lost until the guest sends something.
    /// Like QEMU's self-announce, the device sends broadcast RARP frames from the MAC for the network to learn it.
    /// A burst, not spaced out: a learning bridge takes the first, and no timer thread is needed.
    /// </summary>
    private void Announce()
    {
        var packet = RarpAnnouncement(_mac);
        for (int i = 0; i < Announcements; i++) _backend.Send(packet); // not the guest's: not in the counters
    }

    /// <summary>A virtio-net header and a minimum-size Ethernet frame: RARP "reverse request" from <paramref name="mac"/> (RFC 903).</summary>
    internal static byte[] RarpAnnouncement(ReadOnlySpan<byte> mac)
    {
        var packet = new byte[HeaderSize + 60]; // header (no offloads: zero) + 60-byte frame (FCS is the host's)
        var frame = packet.AsSpan(HeaderSize);
        frame[..6].Fill(0xff);                       // destination: broadcast
        mac.CopyTo(frame[6..]);                      // source: the guest's MAC
        frame[12] = 0x80; frame[13] = 0x35;          // EtherType RARP
        frame[14] = 0x00; frame[15] = 0x01;          // hardware type Ethernet
        frame[16] = 0x08; frame[17] = 0x00;          // protocol type IPv4
        frame[18] = 6; frame[19] = 4;                // address lengths
        frame[20] = 0x00; frame[21] = 0x03;          // operation: reverse request
        mac.CopyTo(frame[22..]);                     // sender hardware address; sender IP 0.0.0.0
        mac.CopyTo(frame[32..]);                     // target hardware address; target IP 0.0.0.0, then padding
        return packet;
    }

    public string StateName => Name;
    public ushort StateVersion => VirtioNetState.Version;

    /// <summary>Called while the transport is paused: the held chains and the pending frame are stable.</summary>
    public VirtioNetState CaptureState() => new(_backend.Name, _mac.ToArray(), _mtu ?? 0, _rxPacket.AsSpan(0, _pendingLen).ToArray(),
        _held.Select(c => new VirtioNetState.HeldChain(c.Head, c.Buffers.ToArray())).ToArray());

    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        var s = VirtioNetState.Read(reader, version);
        if (s.TapName != _backend.Name) throw reader.Fail($"the snapshot's tap is '{s.TapName}', this device's '{_backend.Name}'");
        // A MAC other than the record's is taken from config.json (which built the device): a clone made by
        // Import-KvmVm -GenerateNewId. The config space shows the new MAC; a driver that read the old one at probe time
        // keeps sending with it until it re-reads it (the built-in guest and Linux read it once).
        if (s.Mtu != (_mtu ?? 0)) throw reader.Fail($"the snapshot's MTU is {s.Mtu}, this device's {_mtu ?? 0}");
        foreach (var c in _held) _spare.Push(c);
        _held.Clear();
        _heldBytes = 0;
        foreach (var h in s.HeldChains)
        {
            var c = Rent();
            c.Clear();
            c.Head = h.Head;
            foreach (var b in h.Buffers) c.Add(b);
            _held.Add(c);
            _heldBytes += c.WritableBytes;
        }
        s.PendingPacket.CopyTo(_rxPacket, 0);
        _pendingLen = s.PendingPacket.Length;
        lock (_pauseLock) _announcePending = true;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _active = null;
        _backend.ReceiveReady = null;
        _backend.Dispose();
    }
}
