using System.Runtime.InteropServices;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using KvmPS.Interop;

namespace KvmPS.Migration;

/// <summary>
/// Where a migration stream goes: <c>tcp:HOST:PORT</c> (HOST a name, an IPv4 address or a bracketed IPv6 address;
/// a receiver may give an empty or <c>0.0.0.0</c> host to listen on every address) or <c>unix:PATH</c>.
/// </summary>
public sealed record MigrationEndpoint(string Uri, string? Host, int Port, string? UnixPath)
{
    public bool IsUnix => UnixPath is not null;

    /// <summary>Parses <paramref name="uri"/>; an unusable one is an <see cref="ArgumentException"/> naming it.</summary>
    public static MigrationEndpoint Parse(string uri)
    {
        if (uri.StartsWith("unix:", StringComparison.Ordinal))
        {
            string path = uri[5..];
            if (path.Length == 0) throw new ArgumentException($"migration URI '{uri}': unix: needs a socket path");
            path = Path.GetFullPath(path);
            if (System.Text.Encoding.UTF8.GetByteCount(path) > 107) throw new ArgumentException($"migration URI '{uri}': the socket path is longer than 107 bytes");
            return new MigrationEndpoint(uri, null, 0, path);
        }
        if (uri.StartsWith("tcp:", StringComparison.Ordinal))
        {
            string rest = uri[4..];
            int colon = rest.LastIndexOf(':');
            if (colon < 0) throw new ArgumentException($"migration URI '{uri}': tcp: needs HOST:PORT");
            string host = rest[..colon];
            if (host.StartsWith('[') && host.EndsWith(']')) host = host[1..^1];
            if (!int.TryParse(rest[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
                throw new ArgumentException($"migration URI '{uri}': '{rest[(colon + 1)..]}' is not a port (1-65535)");
            if (host.StartsWith('-')) throw new ArgumentException($"migration URI '{uri}': '{host}' is not a host name");
            return new MigrationEndpoint(uri, host, port, null);
        }
        throw new ArgumentException($"migration URI '{uri}' is not tcp:HOST:PORT or unix:PATH");
    }

    /// <summary>Connects (the sender's side), within <paramref name="timeoutMs"/>.</summary>
    public Socket Connect(int timeoutMs)
    {
        Socket socket;
        EndPoint target;
        if (UnixPath is { } path)
        {
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            target = new UnixDomainSocketEndPoint(path);
        }
        else
        {
            IPAddress address;
            try { address = IPAddress.TryParse(Host, out var a) ? a : Dns.GetHostAddresses(Host!).First(); }
            catch (Exception e) when (e is SocketException or InvalidOperationException) { throw new MigrationException($"{Uri}: cannot resolve '{Host}': {e.Message}", e); }
            socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            target = new IPEndPoint(address, Port);
        }
        try
        {
            var connect = socket.BeginConnect(target, null, null);
            if (!connect.AsyncWaitHandle.WaitOne(timeoutMs)) throw new MigrationException($"{Uri}: the destination did not accept the connection within {timeoutMs} ms");
            socket.EndConnect(connect);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new MigrationException($"{Uri}: cannot connect to the destination: {e.SocketErrorCode} ({e.Message})", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Listens (the receiver's side). A Unix socket is created mode 0600 (a stale socket file is replaced, anything
    /// else there is refused); <see cref="IncomingListener.Dispose"/> removes it. With <paramref name="owner"/> (a jailed
    /// VMM set up as root) the socket becomes that user's, so a source jailed as the same user can connect.
    /// </summary>
    public IncomingListener Listen((uint Uid, uint Gid)? owner = null)
    {
        if (UnixPath is { } path)
        {
            if (File.Exists(path) || Directory.Exists(path))
            {
                if (Libc.FileTypeOf(path) != Libc.S_IFSOCK) throw new MigrationException($"{Uri}: {path} exists and is not a socket; refusing to replace it");
                File.Delete(path);
            }
            var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                UnixSockets.BindOwnerOnly(unix, path); // born 0600
                if (owner is { } o && Libc.Lchown(path, o.Uid, o.Gid) != 0)
                    throw new SocketException(Marshal.GetLastPInvokeError());
                unix.Listen(1);
            }
            catch (SocketException e)
            {
                unix.Dispose();
                throw new MigrationException($"{Uri}: cannot listen on {path}: {e.Message}", e);
            }
            return new IncomingListener(unix, path);
        }
        var address = string.IsNullOrEmpty(Host) ? IPAddress.Any : IPAddress.TryParse(Host, out var a) ? a : null;
        if (address is null)
        {
            try { address = Dns.GetHostAddresses(Host!).First(); }
            catch (Exception e) when (e is SocketException or InvalidOperationException) { throw new MigrationException($"{Uri}: cannot resolve '{Host}': {e.Message}", e); }
        }
        var tcp = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            tcp.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            tcp.Bind(new IPEndPoint(address, Port));
            tcp.Listen(1);
        }
        catch (SocketException e)
        {
            tcp.Dispose();
            throw new MigrationException($"{Uri}: cannot listen on {address}:{Port}: {e.SocketErrorCode} ({e.Message})", e);
        }
        return new IncomingListener(tcp, null);
    }
}

/// <summary>The receiver's listening socket; waits for the one connection, then goes away (the Unix socket file with it).</summary>
public sealed class IncomingListener(Socket socket, string? unixPath) : IDisposable
{
    /// <summary>Waits for a connection, polling <paramref name="stop"/> so a signal can end the wait; null when stopped.</summary>
    public Socket? Accept(Func<bool> stop)
    {
        while (!stop())
        {
            if (!socket.Poll(200_000, SelectMode.SelectRead)) continue;
            var client = socket.Accept();
            if (client.ProtocolType == ProtocolType.Tcp) client.NoDelay = true;
            return client;
        }
        return null;
    }

    public void Dispose()
    {
        socket.Dispose();
        if (unixPath is not null) try { File.Delete(unixPath); } catch (IOException) { }
    }
}
