using System.Net.Sockets;
using System.Text;

namespace KvmPS.Devices.Virtio.Vsock;

/// <summary>
/// One stream connection between a guest port and a host Unix socket. Protocol state is guarded by the device's Sync
/// lock; the socket and its readiness belong to the host thread (<see cref="VsockHost"/>), which alone reads, writes
/// and closes it.
/// </summary>
internal sealed class VsockConnection
{
    public enum States { Connecting, Established, Closed }

    /// <summary>Bytes read from the host socket at most at once (one packet; Linux's rx buffers are 4 KiB).</summary>
    public const int MaxReadBytes = 4096;
    /// <summary>Reads from one socket per host-thread round, so one busy connection does not starve the others.</summary>
    private const int ReadsPerRound = 16;

    private readonly VsockHost _host;
    private readonly Queue<byte[]> _toHost = new(); // guest data not yet written; the first chunk from _toHostOffset
    private int _toHostOffset;
    private byte[]? _reply;                          // "OK <port>\n" to a host client, written before any guest data
    private int _replyOffset;

    public uint LocalPort { get; }
    public uint PeerPort { get; }
    public bool HostInitiated { get; }
    public States State { get; set; } = States.Connecting;
    public bool Closed => State == States.Closed;

    // Host thread only.
    internal Socket? Socket;
    internal ulong Token;
    internal long ConnectDeadline, RetryAt;          // Stopwatch timestamps (RetryAt 0: no retry pending)
    internal bool Readable = true, Writable = true;  // edge-triggered readiness, cleared by EAGAIN
    internal bool Retired;                           // its socket is closed
    private bool _hostWriteShut;

    private uint _peerBufAlloc, _peerFwdCnt, _txCnt;   // guest's receive window, what it consumed, what we sent it
    private uint _fwdCnt, _lastAdvertisedFwd;          // bytes of guest data written to the host socket
    private long _queued;                              // guest data not yet written
    private long _undelivered;                         // host data queued for the guest, not yet in its rx buffers
    private bool _guestShutSend, _guestShutRecv, _hostEof;

    public VsockConnection(VsockHost host, uint localPort, uint peerPort, bool hostInitiated)
    {
        _host = host;
        LocalPort = localPort;
        PeerPort = peerPort;
        HostInitiated = hostInitiated;
    }

    /// <summary>
    /// Bytes the guest has room for, at most one read's worth. Its buf_alloc counts as at most
    /// <see cref="VsockHost.BufAlloc"/>: a guest advertising 4 GiB must not make the device buffer 4 GiB for it.
    /// </summary>
    private int CreditLocked => (int)Math.Clamp((long)Math.Min(_peerBufAlloc, VsockHost.BufAlloc) - (uint)(_txCnt - _peerFwdCnt), 0, MaxReadBytes);

    /// <summary>How much may be read from the host socket now (0: wait until the guest side asks for service). Caller holds the lock.</summary>
    private int ReadAllowanceLocked()
    {
        int credit = CreditLocked;
        if (credit == 0) return 0;
        long room = VirtioVsock.MaxUndeliveredPerConnection - _undelivered;
        if (room <= 0) return 0; // served again by DataDeliveredLocked
        if (_host.Device.DataBudgetExhaustedLocked(this)) return 0; // served again when the total falls
        return (int)Math.Min(credit, room);
    }

    public void DataQueuedLocked(int n) => _undelivered += n;

    /// <summary><paramref name="n"/> bytes of this connection's data reached the guest (or were dropped).</summary>
    public void DataDeliveredLocked(int n)
    {
        _undelivered -= n;
        if (_undelivered < VirtioVsock.MaxUndeliveredPerConnection) WakeLocked();
    }

    /// <summary>Asks the host thread to look at this connection again (it re-checks credit and limits itself).</summary>
    public void WakeLocked()
    {
        if (!Closed) _host.RequestServiceLocked(this);
    }

    public void FillCredit(VsockPacket p)
    {
        p.BufAlloc = VsockHost.BufAlloc;
        p.FwdCnt = _fwdCnt;
        _lastAdvertisedFwd = _fwdCnt;
    }

    public void UpdatePeerCreditLocked(VsockPacket p)
    {
        _peerBufAlloc = p.BufAlloc;
        _peerFwdCnt = p.FwdCnt;
        if (CreditLocked > 0) WakeLocked();
    }

    public void SendCreditUpdateLocked()
        => _host.Device.EnqueueLocked(new VsockPacket { Op = VirtioVsock.OpCreditUpdate, SrcPort = LocalPort, DstPort = PeerPort, Connection = this });

    /// <summary>The guest answered a host client's REQUEST: the client gets <c>OK &lt;port&gt;\n</c>, then the stream.</summary>
    public void OnGuestAcceptedLocked()
    {
        State = States.Established;
        _reply = Encoding.ASCII.GetBytes($"OK {LocalPort}\n");
        WakeLocked();
    }

    public void OnGuestDataLocked(VsockPacket p)
    {
        if (State != States.Established || _guestShutSend) { CloseLocked(sendRst: true); return; }
        if (_queued + p.DataLength > VsockHost.BufAlloc)
        {
            _host.Device.LogLimited($"virtio-vsock: guest port {PeerPort} sent beyond its credit; connection reset");
            CloseLocked(sendRst: true);
            return;
        }
        if (p.DataLength == 0) return;
        _queued += p.DataLength;
        _toHost.Enqueue(p.Data.AsSpan(p.DataOffset, p.DataLength).ToArray());
        WakeLocked();
    }

    public void OnGuestShutdownLocked(uint flags)
    {
        if (State != States.Established) { CloseLocked(sendRst: true); return; }
        if ((flags & VirtioVsock.ShutdownRcv) != 0) _guestShutRecv = true;
        if ((flags & VirtioVsock.ShutdownSend) != 0) _guestShutSend = true;
        WakeLocked();
    }

    // ---- host thread ----

    /// <summary>
    /// Writes what is queued for the host peer, then reads what the guest has credit for. True when the read stopped
    /// at <see cref="ReadsPerRound"/> with more allowed (the host thread comes back to it next round).
    /// </summary>
    public bool Service(Socket s, byte[] buffer)
    {
        WriteToHost(s);
        return ReadFromHost(s, buffer);
    }

    /// <summary>Guest data → host socket until EAGAIN; fwd_cnt advances as bytes are written, and the guest hears about it when the queue drains.</summary>
    private void WriteToHost(Socket s)
    {
        bool kick = false;
        while (true)
        {
            byte[] chunk;
            int offset;
            bool guestData;
            lock (_host.Sync)
            {
                if (Closed) return;
                if (_reply is not null) { chunk = _reply; offset = _replyOffset; guestData = false; }
                else if (_toHost.Count > 0) { chunk = _toHost.Peek(); offset = _toHostOffset; guestData = true; }
                else break;
            }
            if (!Writable) return; // EPOLLOUT brings the thread back
            int n = s.Send(chunk.AsSpan(offset), SocketFlags.None, out SocketError error);
            if (error == SocketError.WouldBlock) { Writable = false; break; }
            if (error != SocketError.Success) { Fail(); return; }
            lock (_host.Sync)
            {
                if (Closed) return;
                if (!guestData)
                {
                    _replyOffset += n;
                    if (_replyOffset == chunk.Length) _reply = null;
                    continue;
                }
                _toHostOffset += n;
                _fwdCnt += (uint)n;
                _queued -= n;
                if (_toHostOffset == chunk.Length) { _toHost.Dequeue(); _toHostOffset = 0; }
                if (_queued == 0 && _fwdCnt != _lastAdvertisedFwd) { SendCreditUpdateLocked(); kick = true; }
            }
        }
        lock (_host.Sync)
        {
            // Everything written and the guest will send no more: half-close, or close once both sides are done.
            if (!Closed && _guestShutSend && _toHost.Count == 0 && _reply is null && !_hostWriteShut)
            {
                _hostWriteShut = true;
                try { s.Shutdown(SocketShutdown.Send); } catch (SocketException) { }
                if (_guestShutRecv || _hostEof) CloseLocked(sendRst: true);
                kick = true;
            }
        }
        if (kick) _host.RequestDelivery();
    }

    /// <summary>Host socket → guest, only as far as the guest's credit allows.</summary>
    private bool ReadFromHost(Socket s, byte[] buffer)
    {
        for (int i = 0; i < ReadsPerRound; i++)
        {
            if (!Readable) return false; // EPOLLIN brings the thread back
            int allowance;
            lock (_host.Sync)
            {
                if (Closed || State != States.Established || _guestShutRecv || _hostEof) return false;
                allowance = ReadAllowanceLocked();
            }
            if (allowance == 0) return false; // a credit update or a delivery asks for service again
            int n = s.Receive(buffer.AsSpan(0, allowance), SocketFlags.None, out SocketError error);
            if (error == SocketError.WouldBlock) { Readable = false; return false; }
            if (error != SocketError.Success) { Fail(); return false; }
            lock (_host.Sync)
            {
                if (Closed) return false;
                if (n == 0)
                {
                    _hostEof = true;
                    _host.Device.EnqueueLocked(new VsockPacket { Op = VirtioVsock.OpShutdown, Flags = VirtioVsock.ShutdownSend, SrcPort = LocalPort, DstPort = PeerPort, Connection = this });
                    if (_guestShutSend && _queued == 0) CloseLocked(sendRst: true);
                }
                else
                {
                    _txCnt += (uint)n;
                    _host.Device.EnqueueLocked(new VsockPacket { Op = VirtioVsock.OpRw, SrcPort = LocalPort, DstPort = PeerPort, Data = buffer.AsSpan(0, n).ToArray(), DataLength = n, Connection = this });
                }
            }
            _host.RequestDelivery();
            if (n == 0) return false;
        }
        return true;
    }

    private void Fail()
    {
        lock (_host.Sync) CloseLocked(sendRst: true);
        _host.RequestDelivery();
    }

    /// <summary>Forgets the connection, tells the guest with RST (optionally), and hands the host socket to the host thread to close.</summary>
    public void CloseLocked(bool sendRst)
    {
        if (Closed) return;
        State = States.Closed;
        _host.RemoveLocked(this);
        if (sendRst) _host.Device.EnqueueLocked(new VsockPacket { Op = VirtioVsock.OpRst, SrcPort = LocalPort, DstPort = PeerPort });
        _toHost.Clear();
        _reply = null;
        _host.RetireLocked(this);
    }
}
