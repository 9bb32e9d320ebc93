using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using KvmPS.Interop;
using KvmPS.Vmm;

namespace KvmPS.Devices.Virtio.Vsock;

/// <summary>
/// The host side of virtio-vsock as Unix sockets ("hybrid vsock", the protocol Firecracker documents):
/// <list type="bullet">
/// <item>Host → guest: a client connects to <see cref="Path"/> and writes <c>CONNECT &lt;port&gt;\n</c>. The device
/// sends the guest a REQUEST from host CID 2 and a fresh host port; when the guest answers RESPONSE the client gets
/// <c>OK &lt;host port&gt;\n</c> and from then on the connection is a plain byte stream. A refused (RST) or
/// unanswered (5 s) request closes the client's connection without a reply.</item>
/// <item>Guest → host: a REQUEST to port P connects to the Unix socket <c>&lt;Path&gt;_P</c>; RESPONSE if something
/// listens there, else RST.</item>
/// </list>
/// Flow control follows the spec's credit scheme: the device advertises <see cref="BufAlloc"/> per connection and
/// fwd_cnt = bytes written to the host socket (CREDIT_UPDATE when its write queue drains); it reads a host socket
/// only while the guest has credit (its buf_alloc counted as at most <see cref="BufAlloc"/>) and while little of
/// that connection's data waits for rx buffers (<see cref="VirtioVsock.MaxUndeliveredPerConnection"/>, and
/// <see cref="VirtioVsock.MaxUndeliveredTotal"/> over all connections). Shutdown: a guest SHUTDOWN with SEND half-closes the host socket after the
/// queued bytes; once the guest has shut down both directions the device closes the host socket and answers RST.
/// EOF from the host becomes SHUTDOWN(SEND) to the guest.
/// </summary>
public sealed class VsockHost : IDisposable
{
    /// <summary>Receive buffer the device advertises per connection (bytes the guest may send before a credit update).</summary>
    public const uint BufAlloc = 256 * 1024;
    public const int MaxConnections = 1024;
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);

    private readonly VirtioVsock _device;
    private readonly Action<string> _log;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _cts = new();
    private readonly Dictionary<(uint Local, uint Peer), VsockConnection> _connections = new(); // guarded by Sync
    private uint _nextPort = 1u << 30;
    private int _disposed;

    /// <summary>The listening socket's full path.</summary>
    public string Path { get; }
    internal object Sync => _device.Sync;
    internal VirtioVsock Device => _device;
    internal Action<string> Log => _log;

    public int ConnectionCount { get { lock (Sync) return _connections.Count; } }

    internal VsockHost(VirtioVsock device, string udsPath, Action<string> log)
    {
        _device = device;
        _log = log;
        Path = System.IO.Path.GetFullPath(udsPath);
        _listener = Bind(Path);
        _ = AcceptLoopAsync();
    }

    private static Socket Bind(string path)
    {
        string? dir = System.IO.Path.GetDirectoryName(path);
        if (dir is null || !Directory.Exists(dir)) throw new VmmResourceException($"vsock socket {path}: the directory {dir} does not exist.");
        if (Encoding.UTF8.GetByteCount(path) > 107) throw new VmmResourceException($"vsock socket {path}: the path is longer than a Unix socket allows (107 bytes).");
        if (File.Exists(path) || Directory.Exists(path))
        {
            if (Libc.FileTypeOf(path) != Libc.S_IFSOCK) throw new VmmResourceException($"vsock socket {path} exists and is not a socket; refusing to replace it.");
            using (var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                bool live;
                try { probe.Connect(new UnixDomainSocketEndPoint(path)); live = true; }
                catch (SocketException) { live = false; }
                if (live) throw new VmmResourceException($"vsock socket {path} is in use (something is listening there).");
            }
            File.Delete(path); // left behind by a process that died
        }
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            uint old = Libc.Umask(0x7f); // 0600 from birth
            try { listener.Bind(new UnixDomainSocketEndPoint(path)); }
            finally { Libc.Umask(old); }
            listener.Listen(64);
            return listener;
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new VmmResourceException($"vsock socket {path}: {e.Message}");
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_cts.IsCancellationRequested)
        {
            Socket client;
            try { client = await _listener.AcceptAsync(_cts.Token); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException) { return; }
            catch (SocketException e) { _log($"virtio-vsock: accept on {Path}: {e.Message}"); await Task.Delay(100); continue; }
            _ = HandleHostClientAsync(client);
        }
    }

    /// <summary>Reads <c>CONNECT port\n</c> one byte at a time (so no stream data is consumed), at most 64 bytes, within 10 s.</summary>
    private async Task<uint?> ReadConnectLineAsync(Socket s)
    {
        var line = new byte[64];
        int n = 0;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_cts.Token);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        while (n < line.Length)
        {
            int got = await s.ReceiveAsync(line.AsMemory(n, 1), SocketFlags.None, timeout.Token);
            if (got == 0) return null;
            if (line[n] == (byte)'\n')
            {
                string text = Encoding.ASCII.GetString(line, 0, n).TrimEnd('\r');
                return text.StartsWith("CONNECT ", StringComparison.Ordinal) && uint.TryParse(text.AsSpan(8), out uint port) ? port : null;
            }
            n++;
        }
        return null;
    }

    private async Task HandleHostClientAsync(Socket client)
    {
        VsockConnection? c = null;
        try
        {
            uint? port = await ReadConnectLineAsync(client);
            if (port is null) { client.Dispose(); return; }
            lock (Sync)
            {
                if (_connections.Count >= MaxConnections) { client.Dispose(); _log($"virtio-vsock: {MaxConnections} connections open; refused a host connection"); return; }
                uint local = AllocatePortLocked(port.Value);
                c = new VsockConnection(this, local, port.Value, hostInitiated: true) { Socket = client };
                _connections[(local, port.Value)] = c;
                _device.EnqueueLocked(new VsockPacket { Op = VirtioVsock.OpRequest, SrcPort = local, DstPort = port.Value, Connection = c });
            }
            _device.Kick();
            bool accepted;
            try { accepted = await c.Established.Task.WaitAsync(ConnectTimeout, _cts.Token); }
            catch (TimeoutException) { accepted = false; }
            if (!accepted)
            {
                lock (Sync) c.CloseLocked(sendRst: true);
                _device.Kick();
                return;
            }
            await client.SendAsync(Encoding.ASCII.GetBytes($"OK {c.LocalPort}\n"), SocketFlags.None, _cts.Token);
            c.StartPumps();
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            if (c is not null) { lock (Sync) c.CloseLocked(sendRst: true); _device.Kick(); }
            else client.Dispose();
        }
    }

    private uint AllocatePortLocked(uint peer)
    {
        while (true)
        {
            uint p = _nextPort++;
            if (_nextPort == 0) _nextPort = 1u << 30;
            if (!_connections.ContainsKey((p, peer))) return p;
        }
    }

    private async Task ConnectToHostAsync(VsockConnection c)
    {
        string target = $"{Path}_{c.LocalPort}";
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_cts.Token);
            timeout.CancelAfter(ConnectTimeout);
            await s.ConnectAsync(new UnixDomainSocketEndPoint(target), timeout.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            s.Dispose();
            _device.LogLimited($"virtio-vsock: guest port {c.PeerPort} → host port {c.LocalPort}: cannot connect to {target}: {e.Message}");
            lock (Sync) c.CloseLocked(sendRst: true);
            _device.Kick();
            return;
        }
        lock (Sync)
        {
            if (c.Closed) { s.Dispose(); return; }
            c.Socket = s;
            c.State = VsockConnection.States.Established;
            _device.EnqueueLocked(new VsockPacket { Op = VirtioVsock.OpResponse, SrcPort = c.LocalPort, DstPort = c.PeerPort, Connection = c });
        }
        _device.Kick();
        c.StartPumps();
    }

    /// <summary>A packet from the guest (header checked by the device: our CIDs, STREAM). Caller holds <see cref="Sync"/>.</summary>
    internal void OnGuestPacketLocked(VsockPacket p)
    {
        _connections.TryGetValue((p.DstPort, p.SrcPort), out var c);
        if (p.Op == VirtioVsock.OpRequest)
        {
            if (c is not null || _connections.Count >= MaxConnections || _disposed != 0)
            {
                c?.CloseLocked(sendRst: false);
                SendRstLocked(p);
                return;
            }
            c = new VsockConnection(this, p.DstPort, p.SrcPort, hostInitiated: false);
            c.UpdatePeerCreditLocked(p);
            _connections[(c.LocalPort, c.PeerPort)] = c;
            _ = ConnectToHostAsync(c);
            return;
        }
        if (c is null)
        {
            if (p.Op != VirtioVsock.OpRst) SendRstLocked(p);
            return;
        }
        c.UpdatePeerCreditLocked(p);
        switch (p.Op)
        {
            case VirtioVsock.OpResponse:
                if (!c.HostInitiated || c.State != VsockConnection.States.Connecting) { c.CloseLocked(sendRst: true); return; }
                c.State = VsockConnection.States.Established;
                c.Established.TrySetResult(true);
                break;
            case VirtioVsock.OpRst:
                c.CloseLocked(sendRst: false);
                break;
            case VirtioVsock.OpRw:
                c.OnGuestDataLocked(p);
                break;
            case VirtioVsock.OpShutdown:
                c.OnGuestShutdownLocked(p.Flags);
                break;
            case VirtioVsock.OpCreditUpdate:
                break;
            case VirtioVsock.OpCreditRequest:
                c.SendCreditUpdateLocked();
                break;
            default:
                c.CloseLocked(sendRst: true);
                break;
        }
    }

    private void SendRstLocked(VsockPacket p)
        => _device.EnqueueLocked(new VsockPacket { Op = VirtioVsock.OpRst, SrcPort = p.DstPort, DstPort = p.SrcPort });

    /// <summary>Resets the connection (local, peer) if there is one (a malformed packet of it). Caller holds <see cref="Sync"/>.</summary>
    internal void ResetLocked(uint local, uint peer)
    {
        if (_connections.TryGetValue((local, peer), out var c)) c.CloseLocked(sendRst: true);
    }

    internal void RemoveLocked(VsockConnection c) => _connections.Remove((c.LocalPort, c.PeerPort));

    /// <summary>Closes every connection without telling the guest (device reset, dispose).</summary>
    public void CloseAll()
    {
        lock (Sync)
            foreach (var c in _connections.Values.ToList()) c.CloseLocked(sendRst: false);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _cts.Cancel();
        _listener.Dispose();
        CloseAll();
        try { File.Delete(Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>One stream connection between a guest port and a host Unix socket. Fields are guarded by the device's Sync lock.</summary>
internal sealed class VsockConnection
{
    public enum States { Connecting, Established, Closed }

    private readonly VsockHost _host;
    private readonly Channel<byte[]> _outgoing = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SemaphoreSlim _creditSignal = new(0, 1);
    private readonly CancellationTokenSource _cts = new();

    public uint LocalPort { get; }
    public uint PeerPort { get; }
    public bool HostInitiated { get; }
    public Socket? Socket { get; set; }
    public States State { get; set; } = States.Connecting;
    public bool Closed => State == States.Closed;
    public TaskCompletionSource<bool> Established { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

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
    private int CreditLocked => (int)Math.Clamp((long)Math.Min(_peerBufAlloc, VsockHost.BufAlloc) - (uint)(_txCnt - _peerFwdCnt), 0, 4096);

    /// <summary>How much may be read from the host socket now (0: wait for a wake-up). Caller holds the lock.</summary>
    private int ReadAllowanceLocked()
    {
        int credit = CreditLocked;
        if (credit == 0) return 0;
        long room = VirtioVsock.MaxUndeliveredPerConnection - _undelivered;
        if (room <= 0) return 0; // woken by DataDeliveredLocked
        if (_host.Device.DataBudgetExhaustedLocked(this)) return 0; // woken when the total falls
        return (int)Math.Min(credit, room);
    }

    public void DataQueuedLocked(int n) => _undelivered += n;

    /// <summary><paramref name="n"/> bytes of this connection's data reached the guest (or were dropped).</summary>
    public void DataDeliveredLocked(int n)
    {
        _undelivered -= n;
        if (_undelivered < VirtioVsock.MaxUndeliveredPerConnection) WakeLocked();
    }

    /// <summary>Wakes the host-socket reader if it waits (it re-checks credit and limits itself).</summary>
    public void WakeLocked()
    {
        if (_creditSignal.CurrentCount == 0) _creditSignal.Release();
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
        _outgoing.Writer.TryWrite(p.Data.AsSpan(p.DataOffset, p.DataLength).ToArray());
    }

    public void OnGuestShutdownLocked(uint flags)
    {
        if (State != States.Established) { CloseLocked(sendRst: true); return; }
        if ((flags & VirtioVsock.ShutdownRcv) != 0) { _guestShutRecv = true; if (_creditSignal.CurrentCount == 0) _creditSignal.Release(); }
        if ((flags & VirtioVsock.ShutdownSend) != 0) { _guestShutSend = true; _outgoing.Writer.TryComplete(); }
    }

    public void StartPumps()
    {
        _ = ReadFromHostAsync();
        _ = WriteToHostAsync();
    }

    /// <summary>Host socket → guest, only as far as the guest's credit allows.</summary>
    private async Task ReadFromHostAsync()
    {
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                int credit;
                Socket s;
                lock (_host.Sync)
                {
                    if (Closed || _guestShutRecv || Socket is null) return;
                    credit = ReadAllowanceLocked();
                    s = Socket;
                }
                if (credit == 0) { await _creditSignal.WaitAsync(_cts.Token); continue; }
                int n = await s.ReceiveAsync(buffer.AsMemory(0, credit), SocketFlags.None, _cts.Token);
                lock (_host.Sync)
                {
                    if (Closed) return;
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
                _host.Device.Kick();
                if (n == 0) return;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            Fail();
        }
    }

    /// <summary>Guest data → host socket; fwd_cnt advances as bytes are written, and the guest hears about it when the queue drains.</summary>
    private async Task WriteToHostAsync()
    {
        try
        {
            var reader = _outgoing.Reader;
            while (await reader.WaitToReadAsync(_cts.Token))
            {
                while (reader.TryRead(out var chunk))
                {
                    Socket? s;
                    lock (_host.Sync) s = Closed ? null : Socket;
                    if (s is null) return;
                    int sent = 0;
                    while (sent < chunk.Length) sent += await s.SendAsync(chunk.AsMemory(sent), SocketFlags.None, _cts.Token);
                    lock (_host.Sync)
                    {
                        _fwdCnt += (uint)chunk.Length;
                        _queued -= chunk.Length;
                        if (_queued == 0 && _fwdCnt != _lastAdvertisedFwd && !Closed) SendCreditUpdateLocked();
                    }
                    _host.Device.Kick();
                }
            }
            // The guest will send no more: half-close, or close completely once both sides are done.
            lock (_host.Sync)
            {
                if (Closed) return;
                try { Socket?.Shutdown(SocketShutdown.Send); } catch (SocketException) { }
                if (_guestShutRecv || _hostEof) CloseLocked(sendRst: true);
            }
            _host.Device.Kick();
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException or ChannelClosedException)
        {
            Fail();
        }
    }

    private void Fail()
    {
        bool closed;
        lock (_host.Sync) { closed = Closed; if (!closed) CloseLocked(sendRst: true); }
        if (!closed) _host.Device.Kick();
    }

    /// <summary>Forgets the connection, closes the host socket, and (optionally) tells the guest with RST.</summary>
    public void CloseLocked(bool sendRst)
    {
        if (Closed) return;
        State = States.Closed;
        _host.RemoveLocked(this);
        if (sendRst) _host.Device.EnqueueLocked(new VsockPacket { Op = VirtioVsock.OpRst, SrcPort = LocalPort, DstPort = PeerPort });
        Established.TrySetResult(false);
        _outgoing.Writer.TryComplete();
        _cts.Cancel();
        Socket?.Dispose();
    }
}
