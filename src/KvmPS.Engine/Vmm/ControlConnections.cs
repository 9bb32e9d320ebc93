using System.Net.Sockets;
using KvmPS.Interop;

namespace KvmPS.Vmm;

/// <summary>
/// How long and how many for the control socket (docs/vmm.md, "Connections"). The defaults are what kvmps-vmm uses;
/// tests shorten them.
/// </summary>
public sealed record ControlServerLimits
{
    /// <summary>Connections served at once. When all are taken, a new one evicts the connection idle longest (see <see cref="ControlConnections"/>).</summary>
    public int MaxClients { get; init; } = 32;

    /// <summary>A connection that sends nothing for this long between requests is closed (an attached console is exempt).</summary>
    public int IdleTimeoutMs { get; init; } = 120_000;

    /// <summary>
    /// A request line must be complete this long after its first byte; a client that trickles bytes or leaves a
    /// partial line is answered <c>MalformedRequest</c> and closed.
    /// </summary>
    public int RequestReadTimeoutMs { get; init; } = 10_000;

    /// <summary>A reply (or console output) that the client does not take within this long closes the connection (<c>SO_SNDTIMEO</c>).</summary>
    public int SendTimeoutMs { get; init; } = 10_000;
}

/// <summary>What a control connection is doing, for eviction: only one waiting for its next request may be evicted.</summary>
internal enum ConnectionPhase
{
    /// <summary>Waiting for (or reading) the next request line.</summary>
    Waiting,
    /// <summary>A request is being carried out or its reply sent.</summary>
    Busy,
    /// <summary>Attached to the guest console (a raw stream that may sit idle by design).</summary>
    Console,
}

/// <summary>One accepted control connection.</summary>
internal sealed class ControlConnection(Socket socket)
{
    public Socket Socket { get; } = socket;
    public volatile ConnectionPhase Phase = ConnectionPhase.Waiting;
    /// <summary>Environment.TickCount64 of the last byte received or the last reply sent.</summary>
    public long LastActivityMs = Environment.TickCount64;
    public volatile bool Evicted;

    /// <summary>Ends the connection from another thread: its blocked read returns 0 and its thread cleans up.</summary>
    public void Evict()
    {
        Evicted = true;
        try { Socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
    }
}

/// <summary>
/// The set of live connections and the fairness rule: with <see cref="ControlServerLimits.MaxClients"/> taken, a new
/// connection evicts the one that has waited longest for its next request, so idle or trickling clients cannot lock
/// management out. Connections carrying out a request or attached to the console are never evicted; when every slot
/// is one of those, the new connection is refused as busy.
/// </summary>
internal sealed class ControlConnections(int maxClients)
{
    private readonly List<ControlConnection> _live = new();

    public int Count { get { lock (_live) return _live.Count; } }

    /// <summary>
    /// Admits <paramref name="connection"/>, evicting the longest-waiting one if needed (returned, already shut down).
    /// False when the slots are all busy: the caller refuses the new connection.
    /// </summary>
    public bool TryAdmit(ControlConnection connection, out ControlConnection? evicted)
    {
        evicted = null;
        lock (_live)
        {
            if (_live.Count >= maxClients)
            {
                ControlConnection? oldest = null;
                foreach (var c in _live)
                    if (c.Phase == ConnectionPhase.Waiting && !c.Evicted && (oldest is null || Volatile.Read(ref c.LastActivityMs) < Volatile.Read(ref oldest.LastActivityMs)))
                        oldest = c;
                if (oldest is null) return false;
                _live.Remove(oldest);
                evicted = oldest;
            }
            _live.Add(connection);
        }
        evicted?.Evict();
        return true;
    }

    public void Remove(ControlConnection connection)
    {
        lock (_live) _live.Remove(connection);
    }
}

/// <summary>
/// Who may use the control socket: root and the user the VMM runs as, told by the kernel (<c>SO_PEERCRED</c>), so
/// a socket whose mode was widened by mistake still serves no one else.
/// </summary>
public static class ControlPeer
{
    private const int SOL_SOCKET = 1, SO_PEERCRED = 17;

    /// <summary>The connecting process's pid, uid and gid (<c>struct ucred</c>); null if the kernel gives none.</summary>
    public static (int Pid, uint Uid, uint Gid)? Credentials(Socket socket)
    {
        Span<byte> ucred = stackalloc byte[12];
        try
        {
            int n = socket.GetRawSocketOption(SOL_SOCKET, SO_PEERCRED, ucred);
            if (n < 12) return null;
        }
        catch (SocketException) { return null; }
        return (BitConverter.ToInt32(ucred), BitConverter.ToUInt32(ucred[4..]), BitConverter.ToUInt32(ucred[8..]));
    }

    /// <summary>The rule: uid 0, or the VMM's own effective uid.</summary>
    public static bool IsAllowed(uint peerUid, uint ownUid) => peerUid == 0 || peerUid == ownUid;

    /// <summary>Null if the peer may talk to this VMM, else why not (for the refusal reply).</summary>
    public static string? Refusal(Socket socket)
    {
        uint own = Libc.GetEuid();
        if (Credentials(socket) is not { } peer)
            return "the connecting process's credentials (SO_PEERCRED) are unavailable";
        return IsAllowed(peer.Uid, own) ? null
            : $"uid {peer.Uid} (pid {peer.Pid}) may not use this control socket: only root and uid {own}, which runs this kvmps-vmm";
    }
}
