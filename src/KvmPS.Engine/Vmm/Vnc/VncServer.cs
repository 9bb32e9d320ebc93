using System.Net;
using System.Net.Sockets;
using System.Text;
using KvmPS.Interop;
using KvmPS.Threading;

namespace KvmPS.Vmm.Vnc;

/// <summary>Timeouts and limits of the VNC server (tests shorten them).</summary>
public sealed record VncServerLimits
{
    /// <summary>Viewers served at once; one more is told so and closed.</summary>
    public int MaxViewers { get; init; } = 8;
    /// <summary>A viewer must finish the handshake (version, security, ClientInit) within this.</summary>
    public int HandshakeTimeoutMs { get; init; } = 10_000;
    /// <summary>Once a message has started, its remaining bytes must come within this.</summary>
    public int MessageTimeoutMs { get; init; } = 10_000;
    /// <summary>A viewer that does not read an update within this (its socket buffer full) is dropped.</summary>
    public int SendTimeoutMs { get; init; } = 5_000;
    /// <summary>How often a viewer with an update request pending looks at the framebuffer (about 30 Hz) while it changes.</summary>
    public int PollIntervalMs { get; init; } = 33;
    /// <summary>
    /// Each look that finds nothing new doubles the interval up to this (QEMU's VNC backs off likewise, by 50 ms a pass up
    /// to 3 s): an idle screen costs about one dirty-log read a second, and a change after a long idle shows within it.
    /// A change sent, a full update request, or keyboard or pointer input returns to <see cref="PollIntervalMs"/>.
    /// </summary>
    public int PollIdleMaxIntervalMs { get; init; } = 1_000;
    /// <summary>Wait after a wrong password before the refusal, to slow guessing.</summary>
    public int AuthFailureDelayMs { get; init; } = 1_000;
}

/// <summary>
/// The VMM's RFB 3.8 server (RFC 6143; docs/display.md "VNC console"): a Unix socket (mode 0600, no authentication:
/// the file mode is the access check) and/or a TCP listener (VNC Authentication when a password file is set; without
/// one only on loopback, checked by <see cref="VncSettings"/>). One accept thread per listener and one thread per
/// viewer, all <see cref="ThreadRole.Vnc"/>. Nothing a viewer sends can stop the server or the VMM.
/// </summary>
public sealed class VncServer : IDisposable
{
    public const int BlankWidth = 640, BlankHeight = 480;

    private readonly List<(Socket Socket, bool Tcp)> _listeners = [];
    private readonly HashSet<VncViewer> _viewers = [];
    private readonly object _lock = new();
    private readonly Action<string> _log;
    private volatile bool _stopping;

    public IVncTarget Target { get; }
    public VncServerLimits Limits { get; }
    internal string? Password { get; }
    public string DesktopName { get; }
    /// <summary>The Unix socket's path, null without one.</summary>
    public string? UnixPath { get; }
    /// <summary>The TCP listener's address as bound (the real port when 0 was asked for), null without one.</summary>
    public IPEndPoint? TcpEndPoint { get; private set; }
    public bool PasswordRequired => Password is not null;
    public bool Stopping => _stopping;
    public int ViewerCount { get { lock (_lock) return _viewers.Count; } }

    private VncServer(VncSettings settings, IVncTarget target, string desktopName, Action<string> log, VncServerLimits? limits)
    {
        Target = target;
        Password = settings.Password;
        DesktopName = desktopName;
        UnixPath = settings.UnixPath is null ? null : Path.GetFullPath(settings.UnixPath);
        _log = log;
        Limits = limits ?? new VncServerLimits();
    }

    /// <summary>Binds the listeners and starts accepting. Throws <see cref="VmmResourceException"/> naming a listener that cannot be bound.</summary>
    public static VncServer Start(VncSettings settings, IVncTarget target, string desktopName, Action<string> log, VncServerLimits? limits = null)
    {
        var server = new VncServer(settings, target, desktopName, log, limits);
        // Whatever the random source opens or loads happens here, before the sandboxed VNC threads need a challenge.
        System.Security.Cryptography.RandomNumberGenerator.Fill(new byte[VncAuthentication.ChallengeBytes]);
        try
        {
            if (server.UnixPath is { } path) server._listeners.Add((BindUnix(path), false));
            if (settings.Tcp is { } endpoint)
            {
                var tcp = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                server._listeners.Add((tcp, true));
                try
                {
                    tcp.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                    tcp.Bind(endpoint);
                    tcp.Listen(8);
                }
                catch (SocketException e) { throw new VmmResourceException($"VNC listener tcp {endpoint}: {e.Message}"); }
                server.TcpEndPoint = (IPEndPoint)tcp.LocalEndPoint!;
            }
            foreach (var (socket, isTcp) in server._listeners)
                EngineThreads.Start(ThreadRole.Vnc, isTcp ? "vnc-tcp" : "vnc-unix", () => server.AcceptLoop(socket, isTcp), 128 * 1024);
            return server;
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    private static Socket BindUnix(string path)
    {
        string? dir = Path.GetDirectoryName(path);
        if (dir is null || !Directory.Exists(dir)) throw new VmmResourceException($"VNC socket {path}: the directory {dir} does not exist.");
        if (File.Exists(path) || Directory.Exists(path))
        {
            // A socket left by a VMM that died is replaced; anything else is not ours to delete.
            if (Libc.FileTypeOf(path) != Libc.S_IFSOCK) throw new VmmResourceException($"VNC socket {path} exists and is not a socket; refusing to replace it.");
            File.Delete(path);
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            UnixSockets.BindOwnerOnly(socket, path);
            socket.Listen(8);
            return socket;
        }
        catch (Exception e) when (e is SocketException or NativeCallException)
        {
            socket.Dispose();
            throw new VmmResourceException($"VNC socket {path}: {e.Message}");
        }
    }

    internal void Log(string message)
    {
        try { _log(message); } catch (Exception) { } // logging never takes a viewer down
    }

    private void AcceptLoop(Socket listener, bool tcp)
    {
        while (!_stopping)
        {
            Socket client;
            try { client = listener.Accept(); }
            catch when (_stopping) { return; }
            catch (SocketException) { Thread.Sleep(50); continue; } // e.g. out of fds: back off instead of spinning
            catch (ObjectDisposedException) { return; }
            try { Admit(client, tcp); }
            catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException) { client.Dispose(); }
        }
    }

    private void Admit(Socket client, bool tcp)
    {
        if (tcp) client.NoDelay = true;
        bool busy;
        lock (_lock) busy = _viewers.Count >= Limits.MaxViewers || _stopping;
        if (busy)
        {
            RefuseBusy(client);
            return;
        }
        var viewer = new VncViewer(client, this, authenticate: tcp && Password is not null);
        lock (_lock) _viewers.Add(viewer);
        try
        {
            EngineThreads.Start(ThreadRole.Vnc, "vnc-viewer", () =>
            {
                try { viewer.Run(); }
                finally
                {
                    lock (_lock) _viewers.Remove(viewer);
                    viewer.Dispose();
                }
            }, 256 * 1024);
        }
        catch (Exception e) when (e is OutOfMemoryException or ThreadStartException)
        {
            lock (_lock) _viewers.Remove(viewer);
            viewer.Dispose();
        }
    }

    /// <summary>
    /// One viewer too many: the version exchange, then "no security types" with the reason (RFC 6143 7.1.2), on the
    /// accept thread with short timeouts so a silent client cannot hold it long.
    /// </summary>
    private void RefuseBusy(Socket client)
    {
        using var stream = new NetworkStream(client, ownsSocket: true);
        try
        {
            client.ReceiveTimeout = client.SendTimeout = 1000;
            int minor = NegotiateVersion(stream, new byte[12]);
            string reason = $"the VMM serves at most {Limits.MaxViewers} VNC viewers at once; try again later";
            if (minor == 3) VncViewer.WriteU32(stream, 0); else stream.WriteByte(0);
            VncViewer.WriteString(stream, reason);
            stream.Flush();
        }
        catch (Exception e) when (e is IOException or SocketException or RfbProtocolException or EndOfStreamException) { }
        Log("vnc: a viewer was refused: the viewer limit is reached");
    }

    /// <summary>
    /// Sends the server's version and reads the viewer's; returns the minor version spoken (3, 7 or 8). RFC 6143 7.1.1:
    /// a 3.x other than 3.3/3.7/3.8 is taken as 3.3 (3.x beyond 8 as 3.8); anything else closes the connection.
    /// </summary>
    internal static int NegotiateVersion(Stream stream, byte[] buffer)
    {
        stream.Write("RFB 003.008\n"u8);
        stream.Flush();
        stream.ReadExactly(buffer, 0, 12);
        var v = buffer.AsSpan(0, 12);
        if (!v.StartsWith("RFB "u8) || v[7] != '.' || v[11] != '\n' || !IsDigits(v[4..7]) || !IsDigits(v[8..11]))
            throw new RfbProtocolException($"not an RFB version string: '{Printable(v)}'");
        int major = int.Parse(Encoding.ASCII.GetString(v[4..7])), minor = int.Parse(Encoding.ASCII.GetString(v[8..11]));
        if (major != 3) throw new RfbProtocolException($"RFB version {major}.{minor} is not 3.x");
        return minor >= 8 ? 8 : minor == 7 ? 7 : 3;
    }

    private static bool IsDigits(ReadOnlySpan<byte> s)
    {
        foreach (byte b in s) if (b is < (byte)'0' or > (byte)'9') return false;
        return true;
    }

    private static string Printable(ReadOnlySpan<byte> s)
    {
        var sb = new StringBuilder();
        foreach (byte b in s) sb.Append(b is >= 0x20 and < 0x7f ? (char)b : '?');
        return sb.ToString();
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (var (socket, _) in _listeners) socket.Dispose();
        if (UnixPath is { } path)
            try { if (Libc.FileTypeOf(path) == Libc.S_IFSOCK) File.Delete(path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException or NativeCallException) { }
        VncViewer[] viewers;
        lock (_lock) viewers = [.. _viewers];
        foreach (var v in viewers) v.Dispose(); // their threads see the closed socket and end
    }
}
