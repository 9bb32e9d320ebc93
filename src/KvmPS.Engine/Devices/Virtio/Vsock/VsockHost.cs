using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using KvmPS.Interop;
using KvmPS.State;
using KvmPS.Threading;
using KvmPS.Vmm;

namespace KvmPS.Devices.Virtio.Vsock;

/// <summary>
/// The host side of virtio-vsock as Unix sockets ("hybrid vsock", the protocol Firecracker documents):
/// <list type="bullet">
/// <item>Host → guest: a client connects to <see cref="Path"/> and writes <c>CONNECT &lt;port&gt;\n</c> (within
/// <see cref="ConnectLineTimeout"/>). The device sends the guest a REQUEST from host CID 2 and a fresh host port; when
/// the guest answers RESPONSE the client gets <c>OK &lt;host port&gt;\n</c> and from then on the connection is a plain
/// byte stream. A refused (RST) or unanswered (<see cref="ConnectTimeout"/>) request closes the client's connection
/// without a reply.</item>
/// <item>Guest → host: a REQUEST to port P connects to the Unix socket <c>&lt;Path&gt;_P</c>; RESPONSE if something
/// listens there, else RST. A listener whose backlog is full is tried again until <see cref="ConnectTimeout"/>.</item>
/// </list>
/// Flow control follows the spec's credit scheme: the device advertises <see cref="BufAlloc"/> per connection and
/// fwd_cnt = bytes written to the host socket (CREDIT_UPDATE when its write queue drains); it reads a host socket
/// only while the guest has credit (its buf_alloc counted as at most <see cref="BufAlloc"/>) and while little of
/// that connection's data waits for rx buffers (<see cref="VirtioVsock.MaxUndeliveredPerConnection"/>, and
/// <see cref="VirtioVsock.MaxUndeliveredTotal"/> over all connections). Shutdown: a guest SHUTDOWN with SEND half-closes the host socket after the
/// queued bytes; once the guest has shut down both directions the device closes the host socket and answers RST.
/// EOF from the host becomes SHUTDOWN(SEND) to the guest.
/// <para>
/// Threads: all socket work runs on one host thread (<see cref="ThreadRole.HostSockets"/>, "kvmps-vsock"): an
/// epoll loop over the listening socket, every host-side socket (non-blocking, edge-triggered) and an eventfd that
/// the guest side signals when it queues data, grants credit, asks for a connection or closes one. Timeouts are
/// deadlines of that loop (its epoll_wait timeout is the nearest one). The same thread delivers queued packets to the
/// guest's rx queue. Guest-side calls (<see cref="OnGuestPacketLocked"/>, on a vCPU or the I/O thread) only change
/// state under <see cref="Sync"/> and signal the eventfd: they never wait for a host socket.
/// </para>
/// </summary>
public sealed partial class VsockHost : IPausable, IDisposable
{
    /// <summary>Receive buffer the device advertises per connection (bytes the guest may send before a credit update).</summary>
    public const uint BufAlloc = 256 * 1024;
    public const int MaxConnections = 1024;
    /// <summary>How long a host → guest request waits for the guest's answer, and a guest → host connect for the host listener.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);
    /// <summary>How long a host client may take to send its <c>CONNECT port\n</c> line.</summary>
    public static readonly TimeSpan ConnectLineTimeout = TimeSpan.FromSeconds(10);

    private readonly VirtioVsock _device;
    private readonly Action<string> _log;
    private volatile Socket? _listener; // null until a live upgrade's destination is handed it (AdoptListener)
    private readonly Dictionary<(uint Local, uint Peer), VsockConnection> _connections = new(); // guarded by Sync
    private uint _nextPort = 1u << 30;
    private int _disposed;

    // Work for the host thread from other threads, guarded by Sync; the eventfd wakes the thread for it.
    private readonly HashSet<VsockConnection> _serviceRequests = new();
    private List<VsockConnection> _connectRequests = new();
    private List<VsockConnection> _retired = new();
    private bool _wakeSignalled, _wakeClosed;
    private volatile bool _deliveryRequested;

    // Pause: the host thread parks between loop iterations.
    private readonly object _pauseLock = new();
    private bool _paused, _parked, _stopping, _threadExited;

    /// <summary>The listening socket's full path.</summary>
    public string Path { get; }
    internal object Sync => _device.Sync;
    internal VirtioVsock Device => _device;
    internal Action<string> Log => _log;

    public int ConnectionCount { get { lock (Sync) return _connections.Count; } }

    /// <summary>Times the host thread delivered queued packets to the guest's rx queue (tests and diagnostics).</summary>
    public long DeliveryRuns => Interlocked.Read(ref _deliveryRuns);
    private long _deliveryRuns;

    /// <summary>True while the host thread is parked by <see cref="Pause"/>.</summary>
    public bool IsParked { get { lock (_pauseLock) return _parked; } }

    /// <param name="deferListener">A live upgrade's destination: the running VMM listens at the path and hands its
    /// listening socket over (<see cref="AdoptListener"/>); nothing is bound here.</param>
    internal VsockHost(VirtioVsock device, string udsPath, Action<string> log, bool deferListener = false)
    {
        _device = device;
        _log = log;
        Path = System.IO.Path.GetFullPath(udsPath);
        var listener = deferListener ? null : Bind(Path);
        try
        {
            _epoll = EpollHandle.Create();
            _wake = EventFdHandle.Create();
            _epoll.Add(_wake, WakeToken);
            if (listener is not null) _epoll.Add(listener.SafeHandle, ListenerToken, Epoll.EPOLLIN | Epoll.EPOLLET);
        }
        catch
        {
            _epoll?.Dispose();
            _wake?.Dispose();
            listener?.Dispose();
            throw;
        }
        _listener = listener;
        _listenerReady = listener is not null;
        OwnsHostSetup = listener is not null;
        _thread = EngineThreads.Start(ThreadRole.HostSockets, "kvmps-vsock", Run);
    }

    /// <summary>A live upgrade's destination: the listener has not been handed over yet.</summary>
    public bool AwaitsListener => _listener is null;

    /// <summary>
    /// Whether disposing removes the socket file. A live upgrade shares the listener between two VMMs: the source gives
    /// the path up once the destination runs the VM, and the destination takes it only then (until then a failure hands
    /// the VM back to the source, which goes on listening there).
    /// </summary>
    public bool OwnsHostSetup { get; set; }

    /// <summary>The listening socket, for a live upgrade to pass to the new VMM (SCM_RIGHTS).</summary>
    internal System.Runtime.InteropServices.SafeHandle ListenerHandle => _listener?.SafeHandle ?? throw new InvalidOperationException($"vsock socket {Path}: not listening");

    /// <summary>
    /// A live upgrade's destination: listens on the socket the running VMM bound at <see cref="Path"/> and handed over,
    /// before any vCPU runs. It must be a listening Unix stream socket bound to exactly this path. Clients waiting in its
    /// backlog are accepted here (the epoll registration reports a socket that is ready already). The socket is the
    /// host's from here (closed on failure).
    /// </summary>
    internal void AdoptListener(SafeSocketHandle received)
    {
        if (_listener is not null) { received.Dispose(); throw new InvalidOperationException($"vsock socket {Path}: already listening"); }
        Socket socket;
        try { socket = new Socket(received); }
        catch (Exception e) when (e is SocketException or ArgumentException)
        {
            received.Dispose();
            throw new VmmResourceException($"vsock socket {Path}: the descriptor handed over is not a socket ({e.Message}).");
        }
        try
        {
            string? bound = (socket.LocalEndPoint as UnixDomainSocketEndPoint)?.ToString();
            if (socket.AddressFamily != AddressFamily.Unix || socket.SocketType != SocketType.Stream)
                throw new VmmResourceException($"vsock socket {Path}: the descriptor handed over is a {socket.AddressFamily} {socket.SocketType} socket, not a Unix stream socket.");
            if (bound != Path)
                throw new VmmResourceException($"vsock socket {Path}: the socket handed over is bound to '{bound}', another path.");
            if (socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.AcceptConnection) is not int listening || listening == 0)
                throw new VmmResourceException($"vsock socket {Path}: the socket handed over is not listening.");
            socket.Blocking = false; // the source's was non-blocking already: the flag belongs to the shared open file
            _listener = socket; // before the registration: the host thread accepts as soon as epoll reports it
            _epoll.Add(socket.SafeHandle, ListenerToken, Epoll.EPOLLIN | Epoll.EPOLLET);
        }
        catch (Exception e) when (e is SocketException or NativeCallException)
        {
            _listener = null;
            CloseWithoutShutdown(socket);
            throw new VmmResourceException($"vsock socket {Path}: the socket handed over cannot be used: {e.Message}");
        }
        catch
        {
            _listener = null;
            CloseWithoutShutdown(socket);
            throw;
        }
    }

    /// <summary>
    /// Closes this process's descriptor of a listening socket and nothing more. Socket.Dispose may shut the socket down
    /// (its abortive close falls back to shutdown(SHUT_RDWR), which makes every later connect fail with ECONNREFUSED)
    /// and deletes a file it bound: both would break the listener for the other VMM of a live upgrade, which shares
    /// the socket. The socket file is removed by <see cref="Dispose"/> when this process owns it.
    /// </summary>
    private static void CloseWithoutShutdown(Socket socket)
    {
        var handle = socket.SafeHandle;
        int fd = (int)handle.DangerousGetHandle();
        handle.SetHandleAsInvalid();
        GC.SuppressFinalize(socket);
        if (fd >= 0) Libc.Close(fd);
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
            UnixSockets.BindOwnerOnly(listener, path); // 0600 from birth
            listener.Listen(64);
            listener.Blocking = false; // accepted on the host thread until EAGAIN
            return listener;
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new VmmResourceException($"vsock socket {path}: {e.Message}");
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

    // ---- the guest side (vCPU or I/O thread, under Sync) ----

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
            _connectRequests.Add(c); // the host thread connects to <Path>_<port> without blocking
            WakeLocked();
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
                c.OnGuestAcceptedLocked();
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

    /// <summary>The connection is closed: the host thread takes its socket out of epoll and closes it. Caller holds <see cref="Sync"/>.</summary>
    internal void RetireLocked(VsockConnection c)
    {
        _retired.Add(c);
        WakeLocked();
    }

    /// <summary>Asks the host thread to write, read or re-check <paramref name="c"/> soon. Caller holds <see cref="Sync"/>.</summary>
    internal void RequestServiceLocked(VsockConnection c)
    {
        if (_serviceRequests.Add(c)) WakeLocked();
    }

    /// <summary>Asks the host thread to deliver queued packets to the guest's rx queue (coalesced).</summary>
    internal void RequestDelivery()
    {
        _deliveryRequested = true;
        if (Thread.CurrentThread == _thread) return; // the thread delivers at the end of its round
        lock (Sync) WakeLocked();
    }

    /// <summary>Signals the eventfd once until the host thread takes the work (a closed eventfd is never written).</summary>
    private void WakeLocked()
    {
        if (_wakeSignalled || _wakeClosed) return;
        _wakeSignalled = true;
        _wake.Signal();
    }

    /// <summary>Closes every connection without telling the guest (device reset, dispose).</summary>
    public void CloseAll()
    {
        lock (Sync)
            foreach (var c in _connections.Values.ToList()) c.CloseLocked(sendRst: false);
    }

    // ---- pause ----

    /// <summary>
    /// Parks the host thread and returns once it is parked: no socket is read or written, no packet queued and nothing
    /// delivered to the guest until <see cref="Resume"/>. Bytes from host peers wait in their sockets; guest-side work
    /// requested meanwhile waits for the thread. Deadlines are moved on by the time spent paused.
    /// </summary>
    public void Pause()
    {
        lock (_pauseLock)
        {
            _paused = true;
            if (Thread.CurrentThread == _thread) return; // parks at the end of this iteration
        }
        lock (Sync) WakeLocked();
        lock (_pauseLock)
            while (!_parked && !_threadExited) Monitor.Wait(_pauseLock);
    }

    public void Resume()
    {
        lock (_pauseLock)
        {
            _paused = false;
            Monitor.PulseAll(_pauseLock);
        }
    }

    /// <summary>Waits while paused; false once the host is stopping. Runs on the host thread between iterations.</summary>
    private bool ParkWhilePaused()
    {
        lock (_pauseLock)
        {
            if (_stopping) return false;
            if (!_paused) return true;
            long since = Stopwatch.GetTimestamp();
            _parked = true;
            Monitor.PulseAll(_pauseLock);
            while (_paused && !_stopping) Monitor.Wait(_pauseLock);
            _parked = false;
            if (_stopping) return false;
            ShiftDeadlines(Stopwatch.GetTimestamp() - since);
            return true;
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        lock (_pauseLock)
        {
            _stopping = true;
            Monitor.PulseAll(_pauseLock);
        }
        lock (Sync) WakeLocked();
        if (Thread.CurrentThread != _thread && !_thread.Join(TimeSpan.FromSeconds(5)))
            _log("virtio-vsock: the host thread did not stop within 5 s");
        CloseAll();
        lock (Sync) _wakeClosed = true; // no late kick writes the eventfd once it is closed
        CloseHostThreadSockets();
        if (_listener is { } listener) CloseWithoutShutdown(listener);
        _epoll.Dispose();
        _wake.Dispose();
        // Not the path a live upgrade handed to another VMM: it listens there now.
        if (OwnsHostSetup) try { File.Delete(Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
