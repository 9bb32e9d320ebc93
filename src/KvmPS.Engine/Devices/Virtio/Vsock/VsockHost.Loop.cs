using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using KvmPS.Interop;

namespace KvmPS.Devices.Virtio.Vsock;

// The host thread: one epoll loop over the listener, the host-side sockets and the wake-up eventfd. Everything in this
// file runs on that thread only (fields below are its own), except CloseHostThreadSockets after the thread has stopped.
public sealed partial class VsockHost
{
    /// <summary>How soon a guest → host connect to a listener whose backlog is full (EAGAIN) is tried again.</summary>
    public static readonly TimeSpan ConnectRetryInterval = TimeSpan.FromMilliseconds(20);
    /// <summary>How soon accepting is tried again after accept failed for a reason other than EAGAIN (out of fds).</summary>
    private static readonly TimeSpan AcceptRetryInterval = TimeSpan.FromMilliseconds(100);
    private const int MaxConnectLineBytes = 64;
    private const ulong WakeToken = 0, ListenerToken = 1;
    /// <summary>Edge-triggered: the thread reads and writes until EAGAIN and remembers readiness per socket, so a
    /// socket it must not read now (no credit) does not wake it again and again.</summary>
    private const uint SocketEvents = Epoll.EPOLLIN | Epoll.EPOLLOUT | Epoll.EPOLLRDHUP | Epoll.EPOLLET;

    private readonly EpollHandle _epoll;
    private readonly EventFdHandle _wake;
    private readonly Thread _thread;
    private readonly Dictionary<ulong, object> _byToken = new();   // every socket the thread owns: HostClient or VsockConnection
    private readonly List<HostClient> _handshakes = new();         // accepted, CONNECT line not read yet
    private readonly List<VsockConnection> _connecting = new();    // waiting for the guest's RESPONSE or the host listener
    private readonly HashSet<VsockConnection> _ready = new();
    private readonly byte[] _readBuffer = new byte[VsockConnection.MaxReadBytes];
    private ulong _nextToken = 2;
    private bool _listenerReady; // set by the constructor: a listener to accept on
    private long _acceptRetryAt;

    /// <summary>A host client that has not finished its <c>CONNECT port\n</c> line.</summary>
    private sealed class HostClient(Socket socket, ulong token, long deadline)
    {
        public readonly Socket Socket = socket;
        public readonly ulong Token = token;
        public long Deadline = deadline;
        public readonly byte[] Line = new byte[MaxConnectLineBytes];
        public int Length;
    }

    private static long Now => Stopwatch.GetTimestamp();
    private static long Ticks(TimeSpan t) => (long)(t.TotalSeconds * Stopwatch.Frequency);

    private void Run()
    {
        Span<ulong> tokens = stackalloc ulong[64];
        try
        {
            while (ParkWhilePaused())
            {
                int n;
                try { n = _epoll.Wait(tokens, TimeoutToNextDeadlineMs()); }
                catch (NativeCallException e) { _log($"virtio-vsock: host thread stopped: {e.Message}"); return; }
                lock (_pauseLock) if (_stopping) return;
                try { RunOnce(tokens[..n]); }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    _log($"virtio-vsock: host thread: {e.GetType().Name}: {e.Message}");
                }
            }
        }
        finally
        {
            lock (_pauseLock)
            {
                _threadExited = true;
                Monitor.PulseAll(_pauseLock);
            }
        }
    }

    private void RunOnce(ReadOnlySpan<ulong> tokens)
    {
        foreach (ulong token in tokens)
        {
            if (token == WakeToken) _wake.Consume();
            else if (token == ListenerToken) { _listenerReady = true; AcceptClients(); }
            else if (_byToken.TryGetValue(token, out var owner))
            {
                if (owner is HostClient h) ReadConnectLine(h);
                else if (owner is VsockConnection c) { c.Readable = c.Writable = true; _ready.Add(c); }
            }
        }
        List<VsockConnection> connects, retired;
        lock (Sync)
        {
            _wakeSignalled = false; // requests from here on signal again
            _ready.UnionWith(_serviceRequests);
            _serviceRequests.Clear();
            (connects, _connectRequests) = (_connectRequests, new List<VsockConnection>());
            (retired, _retired) = (_retired, new List<VsockConnection>());
        }
        foreach (var c in retired) CloseSocketOf(c);
        foreach (var c in connects) StartConnectToHost(c);
        foreach (var c in _ready)
        {
            if (c.Retired || c.Socket is not { } s) continue;
            if (c.Service(s, _readBuffer)) { lock (Sync) RequestServiceLocked(c); } // read its share; more next round
        }
        _ready.Clear();
        CheckDeadlines(Now);
        if (_deliveryRequested)
        {
            _deliveryRequested = false;
            Interlocked.Increment(ref _deliveryRuns);
            _device.DeliverFromHost();
        }
    }

    // ---- host → guest: accept, the CONNECT line ----

    private void AcceptClients()
    {
        while (_listenerReady && _acceptRetryAt == 0)
        {
            Socket client;
            try { client = _listener!.Accept(); }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock) { _listenerReady = false; return; }
            catch (SocketException e)
            {
                _log($"virtio-vsock: accept on {Path}: {e.Message}");
                _acceptRetryAt = Now + Ticks(AcceptRetryInterval); // e.g. out of fds: the pending client stays in the backlog
                return;
            }
            client.Blocking = false;
            var h = new HostClient(client, _nextToken++, Now + Ticks(ConnectLineTimeout));
            if (!Watch(client, h.Token, h)) continue;
            _handshakes.Add(h);
            ReadConnectLine(h); // the line may be there already (edge-triggered: no event for it)
        }
    }

    /// <summary>Reads <c>CONNECT port\n</c> one byte at a time (so no stream data is consumed), at most 64 bytes.</summary>
    private void ReadConnectLine(HostClient h)
    {
        while (h.Length < h.Line.Length)
        {
            int got = h.Socket.Receive(h.Line.AsSpan(h.Length, 1), SocketFlags.None, out SocketError error);
            if (error == SocketError.WouldBlock) return;
            if (error != SocketError.Success || got == 0) { DropClient(h); return; }
            if (h.Line[h.Length] == (byte)'\n')
            {
                string text = Encoding.ASCII.GetString(h.Line, 0, h.Length).TrimEnd('\r');
                if (text.StartsWith("CONNECT ", StringComparison.Ordinal) && uint.TryParse(text.AsSpan(8), out uint port)) RequestGuestConnection(h, port);
                else DropClient(h);
                return;
            }
            h.Length++;
        }
        DropClient(h);
    }

    /// <summary>Sends the guest a REQUEST for the client; the socket now belongs to the connection.</summary>
    private void RequestGuestConnection(HostClient h, uint port)
    {
        _handshakes.Remove(h);
        VsockConnection? c = null;
        lock (Sync)
        {
            if (_connections.Count < MaxConnections)
            {
                uint local = AllocatePortLocked(port);
                c = new VsockConnection(this, local, port, hostInitiated: true) { Socket = h.Socket, Token = h.Token, ConnectDeadline = Now + Ticks(ConnectTimeout) };
                _connections[(local, port)] = c;
                _device.EnqueueLocked(new VsockPacket { Op = VirtioVsock.OpRequest, SrcPort = local, DstPort = port, Connection = c });
            }
        }
        if (c is null)
        {
            _log($"virtio-vsock: {MaxConnections} connections open; refused a host connection");
            DropClient(h);
            return;
        }
        _byToken[h.Token] = c;
        _connecting.Add(c);
        _deliveryRequested = true;
    }

    private void DropClient(HostClient h)
    {
        _handshakes.Remove(h);
        Unwatch(h.Socket, h.Token);
    }

    // ---- guest → host: non-blocking connect to <Path>_<port> ----

    private void StartConnectToHost(VsockConnection c)
    {
        lock (Sync) if (c.Closed) return;
        c.ConnectDeadline = Now + Ticks(ConnectTimeout);
        _connecting.Add(c);
        TryConnectToHost(c);
    }

    /// <summary>
    /// One non-blocking connect. AF_UNIX connects at once or fails; a full backlog is EAGAIN (the socket stays
    /// unconnected), so the attempt is repeated every <see cref="ConnectRetryInterval"/> until the deadline.
    /// </summary>
    private void TryConnectToHost(VsockConnection c)
    {
        c.RetryAt = 0;
        string target = $"{Path}_{c.LocalPort}";
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { Blocking = false };
        string? failure = null;
        try { s.Connect(new UnixDomainSocketEndPoint(target)); }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.TryAgain)
        {
            s.Dispose();
            c.RetryAt = Now + Ticks(ConnectRetryInterval);
            return;
        }
        catch (Exception e) when (e is SocketException or ArgumentException)
        {
            failure = e.Message;
        }
        if (failure is not null)
        {
            s.Dispose();
            RefuseGuestConnection(c, target, failure);
            return;
        }
        ulong token = _nextToken++;
        if (!Watch(s, token, c)) { RefuseGuestConnection(c, target, "epoll_ctl failed"); return; }
        c.Socket = s;
        c.Token = token;
        lock (Sync)
        {
            if (c.Closed) return; // retired: its socket is closed with it
            c.State = VsockConnection.States.Established;
            _device.EnqueueLocked(new VsockPacket { Op = VirtioVsock.OpResponse, SrcPort = c.LocalPort, DstPort = c.PeerPort, Connection = c });
            RequestServiceLocked(c); // the host peer may have written already
        }
        _deliveryRequested = true;
    }

    private void RefuseGuestConnection(VsockConnection c, string target, string why)
    {
        _device.LogLimited($"virtio-vsock: guest port {c.PeerPort} → host port {c.LocalPort}: cannot connect to {target}: {why}");
        lock (Sync) c.CloseLocked(sendRst: true);
        _deliveryRequested = true;
    }

    // ---- deadlines ----

    private void CheckDeadlines(long now)
    {
        for (int i = _handshakes.Count - 1; i >= 0; i--)
            if (now >= _handshakes[i].Deadline) DropClient(_handshakes[i]);
        for (int i = _connecting.Count - 1; i >= 0; i--)
        {
            var c = _connecting[i];
            VsockConnection.States state;
            lock (Sync) state = c.State;
            if (state != VsockConnection.States.Connecting) { _connecting.RemoveAt(i); continue; }
            if (now >= c.ConnectDeadline)
            {
                _connecting.RemoveAt(i);
                if (c.HostInitiated) { lock (Sync) c.CloseLocked(sendRst: true); _deliveryRequested = true; } // the guest never answered
                else RefuseGuestConnection(c, $"{Path}_{c.LocalPort}", "its listener accepted nothing within " + ConnectTimeout.TotalSeconds + " s");
                continue;
            }
            if (!c.HostInitiated && c.RetryAt != 0 && now >= c.RetryAt) TryConnectToHost(c);
        }
        if (_acceptRetryAt != 0 && now >= _acceptRetryAt)
        {
            _acceptRetryAt = 0;
            _listenerReady = _listener is not null;
            AcceptClients();
        }
    }

    private int TimeoutToNextDeadlineMs()
    {
        long next = long.MaxValue;
        foreach (var h in _handshakes) next = Math.Min(next, h.Deadline);
        foreach (var c in _connecting)
        {
            next = Math.Min(next, c.ConnectDeadline);
            if (c.RetryAt != 0) next = Math.Min(next, c.RetryAt);
        }
        if (_acceptRetryAt != 0) next = Math.Min(next, _acceptRetryAt);
        if (next == long.MaxValue) return -1;
        long ms = (next - Now) * 1000 / Stopwatch.Frequency + 1; // rounded up: never wake just before the deadline
        return (int)Math.Clamp(ms, 0, int.MaxValue);
    }

    /// <summary>Time spent paused does not count against clients and connects waiting on a deadline.</summary>
    private void ShiftDeadlines(long pausedTicks)
    {
        foreach (var h in _handshakes) h.Deadline += pausedTicks;
        foreach (var c in _connecting)
        {
            c.ConnectDeadline += pausedTicks;
            if (c.RetryAt != 0) c.RetryAt += pausedTicks;
        }
        if (_acceptRetryAt != 0) _acceptRetryAt += pausedTicks;
    }

    // ---- socket ownership ----

    /// <summary>Adds a socket to the epoll set under <paramref name="token"/>; on failure the socket is closed.</summary>
    private bool Watch(Socket s, ulong token, object owner)
    {
        try { _epoll.Add(s.SafeHandle, token, SocketEvents); }
        catch (NativeCallException e)
        {
            _log($"virtio-vsock: cannot watch a host socket: {e.Message}");
            s.Dispose();
            return false;
        }
        _byToken[token] = owner;
        return true;
    }

    private void Unwatch(Socket s, ulong token)
    {
        _byToken.Remove(token);
        _epoll.Remove(s.SafeHandle);
        s.Dispose();
    }

    private void CloseSocketOf(VsockConnection c)
    {
        c.Retired = true;
        if (c.Socket is { } s) Unwatch(s, c.Token);
        c.Socket = null;
    }

    /// <summary>Closes every socket the host thread owned (after it has stopped).</summary>
    private void CloseHostThreadSockets()
    {
        foreach (var owner in _byToken.Values)
        {
            if (owner is HostClient h) h.Socket.Dispose();
            else if (owner is VsockConnection c) { c.Retired = true; c.Socket?.Dispose(); c.Socket = null; }
        }
        _byToken.Clear();
        _handshakes.Clear();
        _connecting.Clear();
    }
}
