using System.Buffers.Binary;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Devices.Virtio.Vsock;

/// <summary>One virtio-vsock packet: the 44-byte <c>virtio_vsock_hdr</c> fields and (for RW) a payload slice.</summary>
public sealed class VsockPacket
{
    public ulong SrcCid, DstCid;
    public uint SrcPort, DstPort;
    public ushort Type = VirtioVsock.TypeStream, Op;
    public uint Flags, BufAlloc, FwdCnt;
    public byte[]? Data;
    public int DataOffset, DataLength;
    /// <summary>Set for packets of a live connection: buf_alloc/fwd_cnt are filled in when the packet reaches the guest.</summary>
    internal VsockConnection? Connection;

    public void WriteHeader(Span<byte> h)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(h, SrcCid);
        BinaryPrimitives.WriteUInt64LittleEndian(h[8..], DstCid);
        BinaryPrimitives.WriteUInt32LittleEndian(h[16..], SrcPort);
        BinaryPrimitives.WriteUInt32LittleEndian(h[20..], DstPort);
        BinaryPrimitives.WriteUInt32LittleEndian(h[24..], (uint)DataLength);
        BinaryPrimitives.WriteUInt16LittleEndian(h[28..], Type);
        BinaryPrimitives.WriteUInt16LittleEndian(h[30..], Op);
        BinaryPrimitives.WriteUInt32LittleEndian(h[32..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(h[36..], BufAlloc);
        BinaryPrimitives.WriteUInt32LittleEndian(h[40..], FwdCnt);
    }

    public static VsockPacket ReadHeader(ReadOnlySpan<byte> h, out uint length)
    {
        length = BinaryPrimitives.ReadUInt32LittleEndian(h[24..]);
        return new VsockPacket
        {
            SrcCid = BinaryPrimitives.ReadUInt64LittleEndian(h),
            DstCid = BinaryPrimitives.ReadUInt64LittleEndian(h[8..]),
            SrcPort = BinaryPrimitives.ReadUInt32LittleEndian(h[16..]),
            DstPort = BinaryPrimitives.ReadUInt32LittleEndian(h[20..]),
            Type = BinaryPrimitives.ReadUInt16LittleEndian(h[28..]),
            Op = BinaryPrimitives.ReadUInt16LittleEndian(h[30..]),
            Flags = BinaryPrimitives.ReadUInt32LittleEndian(h[32..]),
            BufAlloc = BinaryPrimitives.ReadUInt32LittleEndian(h[36..]),
            FwdCnt = BinaryPrimitives.ReadUInt32LittleEndian(h[40..]),
        };
    }

    public override string ToString() => $"{VirtioVsock.OpName(Op)} {SrcCid}:{SrcPort} -> {DstCid}:{DstPort} len {DataLength}";
}

/// <summary>
/// virtio socket device (type 19), virtio 1.x "Socket Device", stream sockets only, with the host side as Unix
/// sockets ("hybrid vsock", see <see cref="VsockHost"/>).
/// <list type="bullet">
/// <item>Configuration: <c>le64 guest_cid</c> (read-only). Feature offered: VIRTIO_VSOCK_F_STREAM.</item>
/// <item>Queues: rx (0, device → driver packets in driver-supplied writable buffers), tx (1, driver → device),
/// event (2: buffers are kept for VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, sent once after a restore).</item>
/// <item>Every tx packet is checked: at least a whole header, <c>len</c> within the buffer and ≤ 64 KiB,
/// src_cid = the guest's CID, dst_cid = 2 (the host), type STREAM. Malformed packets are dropped (logged, counted);
/// packets to unknown connections get RST, as the spec asks.</item>
/// <item>Packets to the guest wait in a queue until the driver supplies rx buffers; data is only read from host
/// sockets while the guest has credit for it (min(buf_alloc, <see cref="VsockHost.BufAlloc"/>) − (tx_cnt − fwd_cnt))
/// and while the data already queued for it is small (<see cref="MaxUndeliveredPerConnection"/> per connection,
/// <see cref="MaxUndeliveredTotal"/> in all), and the queue of control packets is bounded, so a guest that never
/// reads (or lies about its buffer space) cannot make the VMM grow.</item>
/// </list>
/// Locking: <see cref="Sync"/> guards the packet queue and every connection; it is taken inside the transport's
/// lock (queue processing) and by the host thread (<see cref="VsockHost"/>), which never holds it while delivering
/// to the rx queue through <see cref="VirtioPciTransport.HandleNotify"/>.
/// </summary>
public sealed class VirtioVsock : IVirtioDevice, IPersistent, IPausable
{
    public const ushort QueueSize = 256;
    public const int RxQueue = 0, TxQueue = 1, EventQueue = 2;
    public const ulong FeatureStream = 1UL << 0;
    public const ulong HostCid = 2;
    public const int HeaderSize = 44;
    public const int MaxPayload = 64 * 1024;
    public const ushort TypeStream = 1;
    public const ushort OpInvalid = 0, OpRequest = 1, OpResponse = 2, OpRst = 3, OpShutdown = 4, OpRw = 5, OpCreditUpdate = 6, OpCreditRequest = 7;
    public const uint ShutdownRcv = 1, ShutdownSend = 2;
    /// <summary>struct virtio_vsock_event's id for "all connections are gone" (5.10.6.6).</summary>
    public const uint VIRTIO_VSOCK_EVENT_TRANSPORT_RESET = 0;
    public const int EventSize = 4;
    /// <summary>Control packets (not data) waiting for rx buffers at most; more are dropped with a log line.</summary>
    public const int MaxPendingControl = 4096;
    /// <summary>Data bytes of one connection waiting for rx buffers at most before its host socket is no longer read.</summary>
    public const int MaxUndeliveredPerConnection = 64 * 1024;
    /// <summary>Data bytes of all connections waiting for rx buffers at most before no host socket is read.</summary>
    public const long MaxUndeliveredTotal = 8L * 1024 * 1024;

    public static string OpName(ushort op) => op switch
    {
        OpRequest => "REQUEST", OpResponse => "RESPONSE", OpRst => "RST", OpShutdown => "SHUTDOWN", OpRw => "RW",
        OpCreditUpdate => "CREDIT_UPDATE", OpCreditRequest => "CREDIT_REQUEST", _ => $"op {op}",
    };

    private readonly GuestMemory _memory;
    private readonly Action<string> _log;
    private readonly DescriptorChain _chain = new();
    private readonly LinkedList<VsockPacket> _toGuest = new();
    private readonly byte[] _header = new byte[HeaderSize];
    private readonly byte[] _payload = new byte[MaxPayload];
    private volatile VirtioPciTransport? _transport;
    private int _pendingControl;
    private long _pendingData;                                 // RW payload bytes in _toGuest
    private readonly HashSet<VsockConnection> _dataWaiters = new(); // readers paused by MaxUndeliveredTotal
    private int _logged;
    private volatile bool _resetEventPending; // restored: TRANSPORT_RESET still owed to the driver

    internal object Sync { get; } = new();
    public ulong GuestCid { get; }
    public VsockHost Host { get; }
    public long DroppedPackets { get; private set; }
    public long PacketsFromGuest { get; private set; }
    public long PacketsToGuest { get; private set; }
    /// <summary>Data bytes read from host sockets and not yet delivered to the guest.</summary>
    public long PendingDataBytes { get { lock (Sync) return _pendingData; } }

    /// <param name="deferListener">A live upgrade's destination: the running VMM hands its listening socket over (<see cref="VsockHost.AdoptListener"/>).</param>
    public VirtioVsock(GuestMemory memory, ulong guestCid, string udsPath, Action<string>? log = null, bool deferListener = false)
    {
        if (guestCid < 3 || guestCid > uint.MaxValue - 1) throw new ArgumentOutOfRangeException(nameof(guestCid), "guest_cid must be 3..4294967294.");
        _memory = memory;
        _log = DeviceLog.Limit(log, Name);
        GuestCid = guestCid;
        Host = new VsockHost(this, udsPath, _log, deferListener);
    }

    /// <summary>Events sent to the driver (TRANSPORT_RESET after a restore).</summary>
    public long EventsSent { get; private set; }
    public bool ResetEventPending => _resetEventPending;

    public string Name => "virtio-vsock";
    public ushort DeviceType => 19;
    public uint PciClassCode => 0x00FF00;
    public int QueueCount => 3;
    public ushort MaxQueueSize(int queue) => QueueSize;
    public ulong DeviceFeatures => FeatureStream;
    public int ConfigSize => 8;

    public void ReadConfig(int offset, Span<byte> data)
    {
        Span<byte> cfg = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(cfg, GuestCid);
        data.Clear();
        if ((uint)offset < 8) cfg[offset..Math.Min(8, offset + data.Length)].CopyTo(data);
    }

    public void WriteConfig(int offset, ReadOnlySpan<byte> data) { }

    public void Activate(IVirtioContext context)
    {
        if (context is VirtioPciTransport t) _transport = t;
    }

    public void Reset()
    {
        // The driver forgot every connection: so do we (host sockets are closed, queued packets dropped).
        Host.CloseAll();
        lock (Sync)
        {
            _toGuest.Clear();
            _pendingControl = 0;
            _pendingData = 0;
            WakeDataWaitersLocked();
        }
    }

    // ---- packets to the guest ----

    /// <summary>Queues a packet for the guest (caller holds <see cref="Sync"/>); false if the control-packet limit is hit.</summary>
    internal bool EnqueueLocked(VsockPacket p)
    {
        bool control = p.Op != OpRw;
        if (control && _pendingControl >= MaxPendingControl)
        {
            DroppedPackets++;
            LogLimited($"virtio-vsock: the guest is not reading; dropped {p}");
            return false;
        }
        if (control) _pendingControl++;
        else
        {
            _pendingData += p.DataLength;
            p.Connection?.DataQueuedLocked(p.DataLength);
        }
        p.SrcCid = HostCid;
        p.DstCid = GuestCid;
        _toGuest.AddLast(p);
        return true;
    }

    /// <summary>
    /// True (and <paramref name="c"/> is woken once the total falls again) when the data queued for the guest over
    /// all connections has reached <see cref="MaxUndeliveredTotal"/>. Caller holds <see cref="Sync"/>.
    /// </summary>
    internal bool DataBudgetExhaustedLocked(VsockConnection c)
    {
        if (_pendingData < MaxUndeliveredTotal) return false;
        _dataWaiters.Add(c);
        return true;
    }

    /// <summary><paramref name="n"/> data bytes of <paramref name="p"/> left the queue (delivered or dropped). Caller holds <see cref="Sync"/>.</summary>
    private void DataLeftQueueLocked(VsockPacket p, int n)
    {
        if (n <= 0) return;
        _pendingData -= n;
        p.Connection?.DataDeliveredLocked(n);
        if (_pendingData < MaxUndeliveredTotal) WakeDataWaitersLocked();
    }

    private void WakeDataWaitersLocked()
    {
        if (_dataWaiters.Count == 0) return;
        foreach (var c in _dataWaiters) c.WakeLocked();
        _dataWaiters.Clear();
    }

    /// <summary>
    /// Delivers queued packets soon: the host thread runs the rx processing (kicks are coalesced), never inline,
    /// so a caller that holds the transport's lock cannot re-enter the device.
    /// </summary>
    internal void Kick()
    {
        if (_transport is null) return;
        Host.RequestDelivery();
    }

    /// <summary>Rx processing on the host thread: queued packets (and a pending TRANSPORT_RESET) go to the guest.</summary>
    internal void DeliverFromHost() => _transport?.HandleNotify(RxQueue);

    private void DeliverToGuest(IVirtioContext context)
    {
        if (context.Queue(RxQueue) is not { } q) return;
        bool used = false;
        lock (Sync)
        {
            while (_toGuest.First is { } node)
            {
                var p = node.Value;
                if (p.Connection is { Closed: true } && p.Op is OpRw or OpCreditUpdate or OpShutdown)
                {
                    _toGuest.RemoveFirst(); // the connection is gone (an RST follows)
                    if (p.Op != OpRw) _pendingControl--;
                    else DataLeftQueueLocked(p, p.DataLength);
                    continue;
                }
                if (q.Pop(_chain) != PopResult.Chain) break;
                ulong room = _chain.WritableBytes;
                if (room < HeaderSize)
                {
                    context.Fail($"rx buffer of {room} bytes is smaller than the {HeaderSize}-byte packet header");
                    return;
                }
                int n = (int)Math.Min((ulong)p.DataLength, room - HeaderSize);
                if (p.Op == OpRw && n == 0 && p.DataLength > 0) { context.Fail("rx buffer has no room for data"); return; }
                if (p.Connection is { } c) c.FillCredit(p);
                int whole = p.DataLength;
                p.DataLength = n;
                p.WriteHeader(_header);
                _chain.WriteTo(_memory, 0, _header);
                if (n > 0) _chain.WriteTo(_memory, HeaderSize, p.Data.AsSpan(p.DataOffset, n));
                q.PushUsed(_chain.Head, (uint)(HeaderSize + n));
                used = true;
                PacketsToGuest++;
                if (p.Op == OpRw) DataLeftQueueLocked(p, n);
                if (n < whole) { p.DataOffset += n; p.DataLength = whole - n; } // the rest goes in the next buffer
                else
                {
                    _toGuest.RemoveFirst();
                    if (p.Op != OpRw) _pendingControl--;
                }
            }
        }
        if (used) context.NotifyUsed(RxQueue);
    }

    // ---- packets from the guest ----

    public void ProcessQueue(IVirtioContext context, int queue)
    {
        if (_resetEventPending) SendTransportReset(context);
        if (queue == TxQueue) ProcessTx(context);
        // Anything queue processing produced (RST, RESPONSE, credit updates) and anything the host thread queued goes out now.
        DeliverToGuest(context);
    }

    private void ProcessTx(IVirtioContext context)
    {
        if (context.Queue(TxQueue) is not { } q) return;
        if (q.DrainAvailable(_chain, this, static (device, _) =>
            {
                device.HandleTxChain();
                return 0u;
            }))
            context.NotifyUsed(TxQueue);
    }

    private void HandleTxChain()
    {
        PacketsFromGuest++;
        if (_chain.ReadableBytes < HeaderSize || _chain.ReadFrom(_memory, 0, _header) < HeaderSize)
        {
            Drop($"a tx buffer of {_chain.ReadableBytes} bytes is shorter than the packet header");
            return;
        }
        var p = VsockPacket.ReadHeader(_header, out uint len);
        if (len > MaxPayload || len > _chain.ReadableBytes - HeaderSize)
        {
            Drop($"{OpName(p.Op)} {p.SrcPort}->{p.DstPort}: len {len} is beyond the buffer ({_chain.ReadableBytes - HeaderSize} bytes) or {MaxPayload}");
            lock (Sync) Host.ResetLocked(p.DstPort, p.SrcPort);
            return;
        }
        if (p.SrcCid != GuestCid)
        {
            Drop($"{OpName(p.Op)}: source CID {p.SrcCid} is not the guest's ({GuestCid})");
            return;
        }
        if (len > 0 && p.Op == OpRw)
        {
            int got = _chain.ReadFrom(_memory, HeaderSize, _payload.AsSpan(0, (int)len));
            p.Data = _payload;
            p.DataLength = got;
        }
        lock (Sync)
        {
            if (p.DstCid != HostCid || p.Type != TypeStream)
            {
                if (p.Op != OpRst) EnqueueLocked(new VsockPacket { Op = OpRst, SrcPort = p.DstPort, DstPort = p.SrcPort });
                return;
            }
            Host.OnGuestPacketLocked(p);
        }
    }

    private void Drop(string why)
    {
        DroppedPackets++;
        LogLimited($"virtio-vsock: dropped a packet from the guest: {why}");
    }

    internal void LogLimited(string message)
    {
        if (_logged >= 32) return;
        _logged++;
        _log(_logged == 32 ? message + " (further messages suppressed)" : message);
    }

    /// <summary>Puts VIRTIO_VSOCK_EVENT_TRANSPORT_RESET in the driver's next event buffer; kept pending until there is one.</summary>
    private void SendTransportReset(IVirtioContext context)
    {
        if (context.Queue(EventQueue) is not { } q) return;
        var r = q.Pop(_chain);
        if (r == PopResult.Empty) { q.EnableNotifications(); return; } // the driver's next event-queue notification retries
        if (r == PopResult.Error) return;
        if (_chain.WritableBytes < EventSize)
        {
            context.Fail($"event buffer {_chain.Head} has {_chain.WritableBytes} writable bytes, less than the {EventSize}-byte event");
            return;
        }
        Span<byte> e = stackalloc byte[EventSize];
        BinaryPrimitives.WriteUInt32LittleEndian(e, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
        _chain.WriteTo(_memory, 0, e);
        q.PushUsed(_chain.Head, EventSize);
        _resetEventPending = false;
        EventsSent++;
        context.NotifyUsed(EventQueue);
    }

    // ---- pause and state ----
    /// <summary>Parks the host thread (waiting for its round in progress): no host socket is read or written, no packet queued or delivered.</summary>
    public void Pause() => Host.Pause();

    /// <summary>Runs again; a restored device now sends its TRANSPORT_RESET event.</summary>
    public void Resume()
    {
        Host.Resume();
        if (_resetEventPending) Kick();
    }

    public string StateName => Name;
    public ushort StateVersion => VirtioVsockState.Version;
    public void SaveState(StateWriter writer) => new VirtioVsockState(GuestCid).Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        // The record's CID is not checked against this device's: config.json (which built the device) wins, so a clone
        // (Import-KvmVm -GenerateNewId rewrites guest_cid there) runs with its new CID. The transport reset owed to the
        // driver makes it re-read the CID (virtio 1.2, 5.10.6.6), as after any restore.
        VirtioVsockState.Read(reader, version);
        _resetEventPending = true;
    }

    public void Dispose()
    {
        _transport = null; // late kicks and the host thread's last round no longer reach the transport
        Host.Dispose();
    }
}
