using KvmPS.Threading;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using KvmPS.Interop;
using static KvmPS.Vmm.ControlProtocol;

namespace KvmPS.Vmm;

/// <summary>What the control protocol can ask of the host process.</summary>
public interface IVmmControl
{
    void WriteDescribe(Utf8JsonWriter w);
    void WriteStatus(Utf8JsonWriter w);
    void WriteMetrics(Utf8JsonWriter w);
    void Pause();
    void Resume();
    /// <summary>Stops the VM; returns once it has stopped. The process exits after the reply is sent.</summary>
    void Stop(bool graceful, TimeSpan timeout, Utf8JsonWriter w);
    void StopReplySent();
    /// <summary>A request some device handles (Devices/Config/IDeviceControl); false when no device knows it.</summary>
    bool TryHandleDeviceRequest(string request, JsonElement arguments, Utf8JsonWriter w);
    /// <summary>Validates that a console can attach now; throws <see cref="ControlRequestException"/> if not.</summary>
    void CheckConsoleAttach();
    ConsoleHub Console { get; }
    void ConsoleInput(ReadOnlySpan<byte> data);
}

/// <summary>
/// The control socket: a Unix stream socket, mode 0600, guarded by an flock on PATH.lock so a second VMM on the
/// same path is refused while a stale socket left by a killed VMM is replaced.
/// </summary>
public sealed class ControlServer : IDisposable
{
    private readonly Socket _listener;
    private readonly FileLock _lock;
    private readonly IVmmControl _control;
    private readonly Thread _acceptThread;
    private volatile bool _disposed;

    public string Path { get; }

    private ControlServer(string path, Socket listener, FileLock fileLock, IVmmControl control)
    {
        Path = path;
        _listener = listener;
        _lock = fileLock;
        _control = control;
        _acceptThread = EngineThreads.Create(ThreadRole.Control, "control-accept", AcceptLoop, 128 * 1024);
    }

    /// <summary>Binds the socket. Throws <see cref="VmmResourceException"/> naming the path if another VMM owns it.</summary>
    public static ControlServer Bind(string path, IVmmControl control)
    {
        path = System.IO.Path.GetFullPath(path);
        string? dir = System.IO.Path.GetDirectoryName(path);
        if (dir is null || !Directory.Exists(dir)) throw new VmmResourceException($"control socket {path}: the directory {dir} does not exist.");
        FileLock? fileLock;
        try { fileLock = FileLock.TryAcquire(path + ".lock"); }
        catch (NativeCallException e) { throw new VmmResourceException($"control socket {path}: cannot create the lock file: {e.Message}"); }
        if (fileLock is null) throw new VmmResourceException($"control socket {path} is in use by another kvmps-vmm process.");
        Socket? listener = null;
        try
        {
            if (File.Exists(path) || Directory.Exists(path))
            {
                // We hold the lock, so whatever is there was left by a VMM that died: replace it, if it is a socket.
                var attributes = File.GetAttributes(path);
                if ((attributes & FileAttributes.Directory) != 0 || !IsSocket(path))
                    throw new VmmResourceException($"control socket {path} exists and is not a socket; refusing to replace it.");
                File.Delete(path);
            }
            listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            uint old = Libc.Umask(0x7f); // 0177: the socket is born 0600: no window where others could connect
            try { listener.Bind(new UnixDomainSocketEndPoint(path)); }
            finally { Libc.Umask(old); }
            listener.Listen(16);
            var server = new ControlServer(path, listener, fileLock, control);
            server._acceptThread.Start();
            return server;
        }
        catch (Exception e)
        {
            listener?.Dispose();
            fileLock.Dispose();
            if (e is VmmResourceException) throw;
            throw new VmmResourceException($"control socket {path}: {e.Message}");
        }
    }

    private static bool IsSocket(string path) => Libc.FileTypeOf(path) == Libc.S_IFSOCK;

    /// <summary>Connections served at once; more are answered with an error and closed.</summary>
    public const int MaxClients = 32;
    /// <summary>A client that sends nothing for this long is disconnected (a console stream is exempt).</summary>
    public const int IdleTimeoutMs = 120_000;
    private int _clients;

    private void AcceptLoop()
    {
        while (!_disposed)
        {
            Socket client;
            try { client = _listener.Accept(); }
            catch when (_disposed) { return; }
            catch (SocketException) { Thread.Sleep(50); continue; } // e.g. out of fds: back off instead of spinning
            if (Interlocked.Increment(ref _clients) > MaxClients)
            {
                Interlocked.Decrement(ref _clients);
                try
                {
                    client.Send(System.Text.Encoding.UTF8.GetBytes($"{{\"ok\":false,\"error\":{{\"code\":\"{ErrorCodes.InvalidState}\",\"message\":\"too many control connections (at most {MaxClients})\"}}}}\n"));
                }
                catch (SocketException) { }
                client.Dispose();
                continue;
            }
            try
            {
                client.ReceiveTimeout = IdleTimeoutMs;
                EngineThreads.Start(ThreadRole.Control, "control-client", () => { try { Serve(client); } finally { Interlocked.Decrement(ref _clients); } });
            }
            catch (Exception)
            {
                // No thread could be had (memory): refuse this client, keep serving the others.
                Interlocked.Decrement(ref _clients);
                client.Dispose();
            }
        }
    }

    private void Serve(Socket client)
    {
        using var stream = new NetworkStream(client, ownsSocket: true);
        var reader = new LineReader(stream);
        try
        {
            while (!_disposed)
            {
                byte[]? line = reader.ReadLine(MaxRequestBytes, out bool tooLong);
                if (line is null) return;
                if (tooLong)
                {
                    Reply(stream, null, w => { }, new ControlRequestException(ErrorCodes.MalformedRequest, $"request longer than {MaxRequestBytes} bytes"));
                    return;
                }
                if (line.Length == 0 || line.AsSpan().Trim((byte)' ').Length == 0) continue;
                if (!Handle(stream, line, reader)) return;
            }
        }
        catch (IOException) { }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
        catch (Exception) { /* whatever went wrong with this client, the VMM goes on */ }
    }

    /// <summary>Handles one request; false when the connection is done (it became a console stream, or stop).</summary>
    private bool Handle(NetworkStream stream, byte[] line, LineReader reader)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line); }
        catch (JsonException e)
        {
            Reply(stream, null, _ => { }, new ControlRequestException(ErrorCodes.MalformedRequest, $"malformed JSON: {e.Message}"));
            return true;
        }
        using (doc)
        {
            var root = doc.RootElement;
            JsonElement? id = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("id", out var idValue) ? idValue.Clone() : null;
            try
            {
                if (root.ValueKind != JsonValueKind.Object) throw new ControlRequestException(ErrorCodes.MalformedRequest, "a request must be a JSON object");
                if (!root.TryGetProperty("request", out var nameElement) || nameElement.ValueKind != JsonValueKind.String)
                    throw new ControlRequestException(ErrorCodes.MalformedRequest, "the request has no \"request\" string naming what to do");
                string name = nameElement.GetString()!;
                switch (name)
                {
                    case Requests.Describe: Reply(stream, id, _control.WriteDescribe); break;
                    case Requests.Status: Reply(stream, id, _control.WriteStatus); break;
                    case Requests.Metrics: Reply(stream, id, _control.WriteMetrics); break;
                    case Requests.Ping: Reply(stream, id, w => w.WriteString("pong", "kvmps-vmm")); break;
                    case Requests.Pause: _control.Pause(); Reply(stream, id, _control.WriteStatus); break;
                    case Requests.Resume: _control.Resume(); Reply(stream, id, _control.WriteStatus); break;
                    case Requests.Stop:
                        bool graceful = OptionalBool(root, "graceful") ?? true;
                        int timeoutMs = OptionalInt(root, "timeout_ms") ?? 10000;
                        if (timeoutMs < 0) throw new ControlRequestException(ErrorCodes.InvalidArgument, $"timeout_ms {timeoutMs} is negative");
                        Reply(stream, id, w => _control.Stop(graceful, TimeSpan.FromMilliseconds(timeoutMs), w));
                        _control.StopReplySent();
                        return false;
                    case Requests.ConsoleAttach:
                        _control.CheckConsoleAttach();
                        bool replay = OptionalBool(root, "replay") ?? true;
                        Reply(stream, id, w => w.WriteBoolean("attached", true));
                        RunConsole(stream, reader, replay);
                        return false;
                    default:
                        var args = root.Clone();
                        Reply(stream, id, w =>
                        {
                            if (!_control.TryHandleDeviceRequest(name, args, w))
                                throw new ControlRequestException(ErrorCodes.UnknownRequest,
                                    $"unknown request '{name}' (known: {string.Join(", ", Requests.All)}, and the devices' requests listed by describe)");
                        });
                        break;
                }
            }
            catch (ControlRequestException e) { Reply(stream, id, _ => { }, e); }
            catch (InvalidOperationException e) { Reply(stream, id, _ => { }, new ControlRequestException(ErrorCodes.InvalidState, e.Message)); }
            catch (Exception e) when (e is not IOException and not SocketException)
            {
                Reply(stream, id, _ => { }, new ControlRequestException(ErrorCodes.InternalError, $"{e.GetType().Name}: {e.Message}"));
            }
            return true;
        }
    }

    private static bool? OptionalBool(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ControlRequestException(ErrorCodes.InvalidArgument, $"\"{name}\" must be true or false"),
        };
    }

    private static int? OptionalInt(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var v)) return null;
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw new ControlRequestException(ErrorCodes.InvalidArgument, $"\"{name}\" must be an integer");
    }


    private static void Reply(NetworkStream stream, JsonElement? id, Action<Utf8JsonWriter> result, ControlRequestException? error = null)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            if (id is { } i) { w.WritePropertyName("id"); i.WriteTo(w); }
            if (error is null)
            {
                try
                {
                    var inner = new MemoryStream();
                    using (var rw = new Utf8JsonWriter(inner))
                    {
                        rw.WriteStartObject();
                        result(rw);
                        rw.WriteEndObject();
                    }
                    w.WriteBoolean("ok", true);
                    w.WritePropertyName("result");
                    w.WriteRawValue(inner.ToArray(), skipInputValidation: true);
                }
                catch (ControlRequestException e) { error = e; }
                catch (ArgumentException e) { error = new ControlRequestException(ErrorCodes.InvalidArgument, e.Message); }
                catch (InvalidOperationException e) { error = new ControlRequestException(ErrorCodes.InvalidState, e.Message); }
            }
            if (error is not null)
            {
                w.WriteBoolean("ok", false);
                w.WriteStartObject("error");
                w.WriteString("code", error.Code);
                w.WriteString("message", error.Message);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        stream.Write(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private void RunConsole(NetworkStream stream, LineReader reader, bool replay)
    {
        // Output goes out on the subscription's own thread; a client that stops reading is disconnected,
        // which also ends this loop's read.
        using var subscription = _control.Console.Subscribe(stream, replay);
        stream.ReadTimeout = Timeout.Infinite; // an attached console may sit idle
        var pending = reader.TakeBuffered();
        if (pending.Length > 0) _control.ConsoleInput(pending);
        var buffer = new byte[4096];
        while (!_disposed)
        {
            int n = stream.Read(buffer);
            if (n <= 0) return;
            _control.ConsoleInput(buffer.AsSpan(0, n));
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _listener.Dispose();
        try { File.Delete(Path); } catch (IOException) { }
        try { File.Delete(Path + ".lock"); } catch (IOException) { }
        _lock.Dispose();
    }

    /// <summary>Newline-delimited reads that keep any bytes after the line (a console client may type at once).</summary>
    private sealed class LineReader(Stream stream)
    {
        private readonly byte[] _buffer = new byte[MaxRequestBytes + 1];
        private int _start, _end;

        public byte[]? ReadLine(int max, out bool tooLong)
        {
            tooLong = false;
            while (true)
            {
                int nl = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
                if (nl >= 0)
                {
                    var line = _buffer.AsSpan(_start, nl - _start).ToArray();
                    _start = nl + 1;
                    return line;
                }
                if (_end - _start >= max) { tooLong = true; return []; }
                if (_start > 0) { Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start); _end -= _start; _start = 0; }
                int n = stream.Read(_buffer, _end, _buffer.Length - _end);
                if (n <= 0) return null;
                _end += n;
            }
        }

        public byte[] TakeBuffered()
        {
            var rest = _buffer.AsSpan(_start, _end - _start).ToArray();
            _start = _end = 0;
            return rest;
        }
    }

}

/// <summary>A host resource the VMM needs is taken or missing (control socket path, memory).</summary>
public sealed class VmmResourceException(string message) : Exception(message);
