using KvmPS.Threading;
using System.Buffers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using KvmPS.Contract;
using KvmPS.Interop;
using static KvmPS.Contract.ControlRequests;

namespace KvmPS.Vmm;

/// <summary>
/// What the control protocol can ask of the host process: one method per request of the wire contract
/// (KvmPS.Contract.ControlRequests), taking its request record and returning its reply record.
/// Throw <see cref="ControlProtocolException"/> to reply with an error code; InvalidOperationException becomes
/// InvalidState and ArgumentException InvalidArgument.
/// </summary>
public interface IVmmControl
{
    DescribeReply Describe();
    StatusReply Status();
    MetricsReply Metrics();
    void Pause();
    void Resume();
    /// <summary>Stops the VM; returns once it has stopped. The process exits after the reply is sent.</summary>
    StopReply Stop(StopRequest request);
    void StopReplySent();
    /// <summary>
    /// snapshot.create (docs/vmm.md), implemented by VmmHost; a control without it (a test double) refuses it as an
    /// unknown request, so a client can tell.
    /// </summary>
    SnapshotCreateReply CreateSnapshot(SnapshotCreateRequest request) =>
        throw new ControlProtocolException(ControlErrorCodes.UnknownRequest, $"this kvmps-vmm does not implement '{SnapshotCreateRequest.Name}' yet");
    /// <summary>vcpu.set: hot-add or remove vCPUs (docs/acpi.md).</summary>
    VcpuSetReply SetVcpus(VcpuSetRequest request) =>
        throw new ControlProtocolException(ControlErrorCodes.UnknownRequest, $"this kvmps-vmm does not implement '{VcpuSetRequest.Name}'");
    /// <summary>device.add: hot-plug a virtio-blk or virtio-net device (ACPI PCI hot-plug, docs/acpi.md).</summary>
    DeviceAddReply AddDevice(DeviceAddRequest request) =>
        throw new ControlProtocolException(ControlErrorCodes.UnknownRequest, $"this kvmps-vmm does not implement '{DeviceAddRequest.Name}'");
    /// <summary>
    /// device.add with the open files that came with it (SCM_RIGHTS; docs/vmm.md "Passing open files"); the device takes
    /// what it uses. A control without it (a test double) answers as a VMM from before passed files did, so clients fall
    /// back to the path.
    /// </summary>
    DeviceAddReply AddDevice(DeviceAddRequest request, Devices.Config.PassedFiles files) => files.Count == 0 ? AddDevice(request)
        : throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"{DeviceAddRequest.Name}: unknown field 'passed_files' (this control takes no passed files)");
    /// <summary>device.remove: ask the guest to eject a hot-pluggable device; released once it does.</summary>
    DeviceRemoveReply RemoveDevice(DeviceRemoveRequest request) =>
        throw new ControlProtocolException(ControlErrorCodes.UnknownRequest, $"this kvmps-vmm does not implement '{DeviceRemoveRequest.Name}'");
    /// <summary>migrate, migrate.status, migrate.cancel: live migration (docs/migration.md), implemented by VmmHost.</summary>
    MigrateStatusReply Migrate(MigrateRequest request) =>
        throw new ControlProtocolException(ControlErrorCodes.UnknownRequest, $"this kvmps-vmm does not implement '{MigrateRequest.Name}'");
    /// <summary>migrate with the connection to the destination that came with it (docs/vmm.md "Passing open files").</summary>
    MigrateStatusReply Migrate(MigrateRequest request, Devices.Config.PassedFiles files) => files.Count == 0 ? Migrate(request)
        : throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"{MigrateRequest.Name}: unknown field 'passed_files' (this control takes no passed files)");
    MigrateStatusReply MigrateStatus() =>
        throw new ControlProtocolException(ControlErrorCodes.UnknownRequest, $"this kvmps-vmm does not implement '{MigrateStatusRequest.Name}'");
    MigrateStatusReply MigrateCancel() =>
        throw new ControlProtocolException(ControlErrorCodes.UnknownRequest, $"this kvmps-vmm does not implement '{MigrateCancelRequest.Name}'");
    /// <summary>
    /// A device's request (balloon.*, net.*; Devices/Config/IDeviceControl) as its record; <paramref name="result"/> is
    /// the device's reply record. False when no device of this VM answers it.
    /// </summary>
    bool TryHandleDeviceRequest(ControlRequest request, out JsonElement result);
    /// <summary>
    /// A device's request with the open files that came with it (media.change's ISO); the device takes what it uses. A
    /// control without it (a test double) answers as a VMM from before passed files did, so clients fall back to the path.
    /// </summary>
    bool TryHandleDeviceRequest(ControlRequest request, Devices.Config.PassedFiles files, out JsonElement result) => files.Count == 0
        ? TryHandleDeviceRequest(request, out result)
        : throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"{request.Request}: unknown field 'passed_files' (this control takes no passed files)");
    /// <summary>Validates that a console can attach now; throws <see cref="ControlProtocolException"/> or InvalidOperationException if not.</summary>
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
    private readonly ControlConnections _connections;
    private readonly object _acceptGate = new();
    private EngineThread? _acceptThread;
    private volatile bool _disposed;

    public string Path { get; }
    public ControlServerLimits Limits { get; }

    private ControlServer(string path, Socket listener, FileLock fileLock, IVmmControl control, ControlServerLimits limits)
    {
        Path = path;
        _listener = listener;
        _lock = fileLock;
        _control = control;
        Limits = limits;
        _connections = new ControlConnections(limits.MaxClients);
    }

    /// <summary>Binds the socket and serves it. Throws <see cref="VmmResourceException"/> naming the path if another VMM owns it.</summary>
    public static ControlServer Bind(string path, IVmmControl control, ControlServerLimits? limits = null)
    {
        var server = BindWithoutServing(path, control, limits);
        server.StartAccepting();
        return server;
    }

    /// <summary>
    /// Binds the socket and listens, without accepting yet: clients queue in the backlog until
    /// <see cref="StartAccepting"/>. The VMM binds as root before its jail and starts accepting after it, so that the
    /// threads serving requests (and the snapshot and migration threads they start) are in the jail's mount namespace
    /// (a thread's mount namespace is the one of the thread that started it).
    /// </summary>
    public static ControlServer BindWithoutServing(string path, IVmmControl control, ControlServerLimits? limits = null)
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
            UnixSockets.BindOwnerOnly(listener, path); // 0600 from birth: no window where others could connect
            listener.Listen(16);
            return new ControlServer(path, listener, fileLock, control, limits ?? new ControlServerLimits());
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

    /// <summary>Connections served at once by default (<see cref="ControlServerLimits.MaxClients"/>).</summary>
    public const int MaxClients = 32;

    /// <summary>Connections now open (for tests and metrics).</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>Starts the accept thread; once.</summary>
    public void StartAccepting()
    {
        lock (_acceptGate)
        {
            if (_acceptThread is not null || _disposed) return;
            _acceptThread = EngineThreads.Launch(ThreadRole.Control, "control-accept", AcceptLoop, 128 * 1024);
        }
    }

    private void AcceptLoop()
    {
        while (true)
        {
            if (_disposed) return;
            Socket client;
            try { client = _listener.Accept(); }
            catch when (_disposed) { return; }
            catch (SocketException) { Thread.Sleep(50); continue; } // e.g. out of fds: back off instead of spinning
            Admit(client);
        }
    }

    private void Admit(Socket client)
    {
        try { client.SendTimeout = Limits.SendTimeoutMs; }
        catch (SocketException) { client.Dispose(); return; }
        if (ControlPeer.Refusal(client) is { } refusal)
        {
            Refuse(client, ControlErrorCodes.PermissionDenied, refusal);
            return;
        }
        var connection = new ControlConnection(client);
        if (!_connections.TryAdmit(connection, out _))
        {
            Refuse(client, ControlErrorCodes.Busy, $"all {Limits.MaxClients} control connections are carrying out requests or attached to the console; try again");
            return;
        }
        try
        {
            EngineThreads.Start(ThreadRole.Control, "control-client", () => { try { Serve(connection); } finally { _connections.Remove(connection); } });
        }
        catch (Exception)
        {
            // No thread could be had (memory): refuse this client, keep serving the others.
            _connections.Remove(connection);
            client.Dispose();
        }
    }

    /// <summary>One error line, then close; the send is bounded by the socket's send timeout.</summary>
    private static void Refuse(Socket client, string code, string message)
    {
        try { client.Send(ReplyLine(null, null, new ControlProtocolException(code, message))); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        CloseAfterReply(client, RefusalDrainMs);
    }

    private const int RefusalDrainMs = 100, FailureDrainMs = 250;

    /// <summary>
    /// Closes a connection the server ends itself so that the client reads the last reply and then end of stream: a
    /// Unix socket closed with unread bytes resets the peer (ECONNRESET), so what the client still sends is read and
    /// dropped for up to <paramref name="drainMs"/> (or until it closes) first.
    /// </summary>
    private static void CloseAfterReply(Socket client, int drainMs)
    {
        try
        {
            client.Shutdown(SocketShutdown.Send);
            var scratch = new byte[4096];
            long deadline = Environment.TickCount64 + drainMs;
            for (long left; (left = deadline - Environment.TickCount64) > 0;)
            {
                if (!client.Poll((int)left * 1000, SelectMode.SelectRead)) break;
                if (client.Receive(scratch, SocketFlags.None) <= 0) break;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        client.Dispose();
    }

    private void Serve(ControlConnection connection)
    {
        var client = connection.Socket;
        using var stream = new NetworkStream(client, ownsSocket: true);
        using var reader = new LineReader(client, Limits);
        try
        {
            while (!_disposed && !connection.Evicted)
            {
                connection.Phase = ConnectionPhase.Waiting;
                byte[]? line = reader.ReadLine(connection, out var failure);
                if (line is null)
                {
                    // A trickled or partial line past its deadline, or one too long: say why, then close.
                    if (failure is not null)
                    {
                        Reply(stream, null, null, new ControlProtocolException(ControlErrorCodes.MalformedRequest, failure));
                        CloseAfterReply(client, FailureDrainMs);
                    }
                    return;
                }
                if (line.Length == 0 || line.AsSpan().Trim((byte)' ').Length == 0) continue;
                connection.Phase = ConnectionPhase.Busy;
                // The files that came with this line are closed after it, whatever it was, unless its device took them.
                using var files = reader.TakeLineFiles(out bool truncated);
                bool goOn = Handle(stream, line, reader, connection, files, truncated);
                StartupPages.NoteActivity(); // the request's code is dropped again once requests stop
                if (!goOn) return;
                Volatile.Write(ref connection.LastActivityMs, Environment.TickCount64);
            }
        }
        catch (IOException) { }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
        catch (Exception) { /* whatever went wrong with this client, the VMM goes on */ }
    }

    /// <summary>Handles one request; false when the connection is done (it became a console stream, or stop).</summary>
    private bool Handle(NetworkStream stream, byte[] line, LineReader reader, ControlConnection connection, Devices.Config.PassedFiles files, bool truncated)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line); }
        catch (JsonException e)
        {
            Reply(stream, null, null, new ControlProtocolException(ControlErrorCodes.MalformedRequest, MalformedJson(e)));
            return true;
        }
        using (doc)
        {
            var root = doc.RootElement;
            // The id is echoed even when the rest of the request does not fit its record; one that cannot be echoed
            // (not valid text) still gets its error reply, without an id.
            JsonElement? id = ControlRequestChecks.Id(root, out string? idProblem);
            try
            {
                if (idProblem is not null) throw new ControlProtocolException(ControlErrorCodes.MalformedRequest, idProblem);
                ControlRequestChecks.Check(root);
                var request = Parse(root);
                CheckPassedFiles(request, files, truncated);
                switch (request)
                {
                    case DescribeRequest: Reply(stream, id, Result(_control.Describe(), ContractJsonContext.Default.DescribeReply)); break;
                    case StatusRequest: Reply(stream, id, Result(_control.Status(), ContractJsonContext.Default.StatusReply)); break;
                    case MetricsRequest: Reply(stream, id, Result(_control.Metrics(), ContractJsonContext.Default.MetricsReply)); break;
                    case PingRequest: Reply(stream, id, Result(new PingReply("kvmps-vmm"), ContractJsonContext.Default.PingReply)); break;
                    case PauseRequest: _control.Pause(); Reply(stream, id, Result(_control.Status(), ContractJsonContext.Default.StatusReply)); break;
                    case ResumeRequest: _control.Resume(); Reply(stream, id, Result(_control.Status(), ContractJsonContext.Default.StatusReply)); break;
                    case VcpuSetRequest vcpus: Reply(stream, id, Result(_control.SetVcpus(vcpus), ContractJsonContext.Default.VcpuSetReply)); break;
                    case DeviceAddRequest add: Reply(stream, id, Result(_control.AddDevice(add, files), ContractJsonContext.Default.DeviceAddReply)); break;
                    case DeviceRemoveRequest remove: Reply(stream, id, Result(_control.RemoveDevice(remove), ContractJsonContext.Default.DeviceRemoveReply)); break;
                    case MigrateRequest migrate: Reply(stream, id, Result(_control.Migrate(migrate, files), ContractJsonContext.Default.MigrateStatusReply)); break;
                    case MigrateStatusRequest: Reply(stream, id, Result(_control.MigrateStatus(), ContractJsonContext.Default.MigrateStatusReply)); break;
                    case MigrateCancelRequest: Reply(stream, id, Result(_control.MigrateCancel(), ContractJsonContext.Default.MigrateStatusReply)); break;
                    case SnapshotCreateRequest snapshot:
                        Reply(stream, id, Result(_control.CreateSnapshot(snapshot), ContractJsonContext.Default.SnapshotCreateReply));
                        break;
                    case StopRequest stop:
                        if (stop.TimeoutMs < 0) throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"timeout_ms {stop.TimeoutMs} is negative");
                        Reply(stream, id, Result(_control.Stop(stop), ContractJsonContext.Default.StopReply));
                        _control.StopReplySent();
                        return false;
                    case ConsoleAttachRequest attach:
                        _control.CheckConsoleAttach();
                        Reply(stream, id, Result(new ConsoleAttachReply(true), ContractJsonContext.Default.ConsoleAttachReply));
                        connection.Phase = ConnectionPhase.Console;
                        RunConsole(stream, reader, attach.Replay);
                        return false;
                    case var device:
                        // balloon.*, net.*: the record checked the arguments; the device that owns the name answers with its reply record.
                        if (!_control.TryHandleDeviceRequest(device, files, out var deviceResult))
                            throw new ControlProtocolException(ControlErrorCodes.UnknownRequest, $"'{device.Request}' needs a device this VM does not have (describe lists the requests it answers)");
                        Reply(stream, id, deviceResult);
                        break;
                }
            }
            catch (ControlProtocolException e) { Reply(stream, id, null, e); }
            catch (ArgumentException e) { Reply(stream, id, null, new ControlProtocolException(ControlErrorCodes.InvalidArgument, e.Message)); }
            catch (InvalidOperationException e) { Reply(stream, id, null, new ControlProtocolException(ControlErrorCodes.InvalidState, e.Message)); }
            catch (Exception e) when (e is not IOException and not SocketException)
            {
                Reply(stream, id, null, new ControlProtocolException(ControlErrorCodes.InternalError, $"{e.GetType().Name}: {e.Message}"));
            }
            return true;
        }
    }

    /// <summary>
    /// The files that came with a request line (SCM_RIGHTS) must be exactly the ones it says it passes
    /// (<c>passed_files</c>; only device.add, media.change and migrate take any): anything else is refused, and the caller closes them all.
    /// </summary>
    private static void CheckPassedFiles(ControlRequest request, Devices.Config.PassedFiles files, bool truncated)
    {
        int expected = request switch { DeviceAddRequest add => add.PassedFiles ?? 0, MediaChangeRequest media => media.PassedFiles ?? 0, MigrateRequest migrate => migrate.PassedFiles ?? 0, _ => 0 };
        if (expected is < 0 or > UnixFdPassing.MaxFds)
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"{request.Request}: \"passed_files\" {expected} is outside 0-{UnixFdPassing.MaxFds}");
        if (truncated)
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"{request.Request}: more than {UnixFdPassing.MaxFds} file descriptors came with the request (at most {UnixFdPassing.MaxFds}); all were closed");
        if (files.Count == expected) return;
        throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, expected == 0
            ? $"'{request.Request}' takes no file descriptors, but {files.Count} came with it (SCM_RIGHTS); they were closed"
            : $"{request.Request}: \"passed_files\" is {expected}, but {files.Count} file descriptors came with the request; they were closed");
    }

    /// <summary>
    /// Where the JSON broke, in words: the NativeAOT VMM has no runtime message texts (UseSystemResourceKeys), so the
    /// reader's own message would be a bare resource key such as "ExpectedStartOfValueNotFound, 0xFF".
    /// </summary>
    internal static string MalformedJson(JsonException e)
    {
        string message = e.Message;
        int cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut >= 0) message = message[..cut].TrimEnd();
        string head = message.Split(',')[0];
        bool isKey = head.Length > 0 && head.All(char.IsAsciiLetterOrDigit);
        string what = !isKey ? message : head switch
        {
            _ when head.Contains("DepthTooLarge", StringComparison.Ordinal) => "nested too deeply (at most 64 levels)",
            _ when head.StartsWith("TrailingComma", StringComparison.Ordinal) => "a trailing comma",
            _ when head.StartsWith("ExpectedStartOfValue", StringComparison.Ordinal) => "a value was expected",
            _ when head.StartsWith("InvalidCharacter", StringComparison.Ordinal) || head.Contains("Utf8", StringComparison.OrdinalIgnoreCase) => "not valid UTF-8 text",
            _ when head.StartsWith("ExpectedEndAfterSingleJson", StringComparison.Ordinal) => "more after the JSON value",
            _ when head.StartsWith("ExpectedSeparator", StringComparison.Ordinal) || head.StartsWith("ExpectedEnd", StringComparison.Ordinal) => "a ',' or closing bracket was expected",
            _ when head.StartsWith("EndOfString", StringComparison.Ordinal) || head.StartsWith("ExpectedJsonTokens", StringComparison.Ordinal) => "the text ends too early",
            _ => "not valid JSON",
        };
        return $"malformed JSON at byte {e.BytePositionInLine ?? 0}: {what}";
    }

    private static JsonElement Result<T>(T reply, JsonTypeInfo<T> typeInfo) => JsonSerializer.SerializeToElement(reply, typeInfo);

    private static void Reply(NetworkStream stream, JsonElement? id, JsonElement? result, ControlProtocolException? error = null) =>
        stream.Write(ReplyLine(id, result, error));

    /// <summary>One reply line (with its newline), through the contract's reply record.</summary>
    private static byte[] ReplyLine(JsonElement? id, JsonElement? result, ControlProtocolException? error)
    {
        try { return ReplyLineOrThrow(id, result, error); }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException && id is not null)
        {
            // Whatever in the id could not be written back (ControlRequestChecks.Id refuses what it knows of), the
            // promised reply still goes out, without the id.
            return ReplyLineOrThrow(null, result, error);
        }
    }

    private static byte[] ReplyLineOrThrow(JsonElement? id, JsonElement? result, ControlProtocolException? error)
    {
        var reply = error is null
            ? new ControlReply { Id = id, Ok = true, Result = result }
            : new ControlReply { Id = id, Ok = false, Error = new ControlError(error.Code, error.Message) };
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer))
            JsonSerializer.Serialize(w, reply, ContractJsonContext.Default.ControlReply);
        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }

    private void RunConsole(NetworkStream stream, LineReader reader, bool replay)
    {
        // Output goes out on the subscription's own thread; a client that stops reading is disconnected,
        // which also ends this loop's read.
        using var subscription = _control.Console.Subscribe(stream, replay);
        stream.ReadTimeout = Timeout.Infinite; // an attached console may sit idle (its output still has the send timeout)
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
        // A jailed VMM whose user may not write the socket's folder leaves both behind, as a crash does; the next start removes them.
        try { File.Delete(Path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        try { File.Delete(Path + ".lock"); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        _lock.Dispose();
    }

    /// <summary>
    /// Newline-delimited reads that keep any bytes after the line (a console client may type at once). Each read is
    /// bounded: by the idle timeout while no byte of the next request has come, and by the request read timeout
    /// from a request's first byte to its newline, however slowly the bytes trickle in.
    /// </summary>
    private sealed class LineReader(Socket socket, ControlServerLimits limits) : IDisposable
    {
        private readonly byte[] _buffer = new byte[MaxRequestBytes + 1];
        private int _start, _end;
        private long _base; // the stream offset of _buffer[0]
        private long _lineEnd = -1; // the stream offset of the last line's newline
        // Files that came with the stream (SCM_RIGHTS), each batch with the offset of the last byte of its read: the
        // kernel ends a read with the message the files came with, whose first byte starts the request line the sender
        // attached them to, so they belong to the line that holds that byte.
        private readonly List<(long LastByte, List<Microsoft.Win32.SafeHandles.SafeFileHandle> Files, bool Truncated)> _files = [];

        /// <summary>The next line; null at end of stream, or with <paramref name="failure"/> set when the client broke a limit.</summary>
        public byte[]? ReadLine(ControlConnection connection, out string? failure)
        {
            failure = null;
            long idleDeadline = Environment.TickCount64 + limits.IdleTimeoutMs;
            long? requestDeadline = null;
            while (true)
            {
                int nl = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
                if (nl >= 0)
                {
                    var line = _buffer.AsSpan(_start, nl - _start).ToArray();
                    _start = nl + 1;
                    _lineEnd = _base + nl;
                    return line;
                }
                if (_end - _start >= MaxRequestBytes) { failure = $"request longer than {MaxRequestBytes} bytes"; return null; }
                if (_start > 0) { Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start); _end -= _start; _base += _start; _start = 0; }
                // Any byte of a request (only whitespace is not one) starts its deadline.
                if (requestDeadline is null && _buffer.AsSpan(0, _end).Trim(" \r\n"u8).Length > 0)
                    requestDeadline = Environment.TickCount64 + limits.RequestReadTimeoutMs;
                long deadline = requestDeadline ?? idleDeadline;
                long remaining = deadline - Environment.TickCount64;
                if (remaining <= 0)
                {
                    failure = requestDeadline is null ? null : $"the request was not completed (no newline) within {limits.RequestReadTimeoutMs} ms of its first byte";
                    return null;
                }
                // recvmsg, not recv: a request may come with open files (SCM_RIGHTS), which recv would drop unseen.
                if (!socket.Poll((int)Math.Min(remaining, 1_000_000) * 1000, SelectMode.SelectRead)) continue;
                var files = new List<Microsoft.Win32.SafeHandles.SafeFileHandle>();
                int n = PassedDescriptors.Receive(socket.SafeHandle, _buffer.AsSpan(_end), files, out bool truncated);
                if (n <= 0)
                {
                    foreach (var f in files) f.Dispose(); // files with no byte: no request to go with
                    if (n < 0) continue; // nothing queued after all
                    return null;
                }
                if (files.Count > 0 || truncated) _files.Add((_base + _end + n - 1, files, truncated));
                _end += n;
                Volatile.Write(ref connection.LastActivityMs, Environment.TickCount64);
            }
        }

        /// <summary>The files that came with the line <see cref="ReadLine"/> returned last (now the caller's); whether some were dropped (too many).</summary>
        public Devices.Config.PassedFiles TakeLineFiles(out bool truncated)
        {
            truncated = false;
            var taken = new List<Microsoft.Win32.SafeHandles.SafeFileHandle>();
            for (int i = 0; i < _files.Count;)
            {
                if (_files[i].LastByte > _lineEnd) { i++; continue; }
                taken.AddRange(_files[i].Files);
                truncated |= _files[i].Truncated;
                _files.RemoveAt(i);
            }
            return new Devices.Config.PassedFiles(taken);
        }

        /// <summary>Closes files that came with no complete line (the connection ended first).</summary>
        public void Dispose()
        {
            foreach (var (_, files, _) in _files)
                foreach (var f in files) f.Dispose();
            _files.Clear();
        }

        public byte[] TakeBuffered()
        {
            var rest = _buffer.AsSpan(_start, _end - _start).ToArray();
            _base += _end;
            _start = _end = 0;
            return rest;
        }
    }

}

/// <summary>A host resource the VMM needs is taken or missing (control socket path, memory).</summary>
public sealed class VmmResourceException(string message) : Exception(message);
