using System.Buffers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using KvmPS.Contract;

namespace KvmPS.Management.Vmm;

/// <summary>
/// A connection to one kvmps-vmm control socket (docs/vmm.md, "Control protocol"): one JSON request per
/// line, one JSON reply per line. Not thread-safe; one request at a time. Every wait is bounded: connecting
/// by the connect timeout, each reply by <see cref="RequestTimeout"/> (<c>stop</c> adds its graceful timeout).
/// <para>
/// Failures: nothing listening (socket file missing, connection refused or closed) →
/// <see cref="VmmNotRunningException"/>; an error reply → <see cref="VmmRequestException"/> with the VMM's
/// code (<c>Busy</c> when every connection slot is carrying out a request); too slow → <see cref="VmmTimeoutException"/>;
/// garbage → <see cref="VmmProtocolException"/>. A timeout or <c>Busy</c> means the VMM is there but not answering
/// now (management reports it Unresponsive and never kills it for that alone).
/// </para>
/// </summary>
public sealed class VmmClient : IDisposable
{
    public static readonly TimeSpan DefaultConnectTimeout = TimeSpan.FromSeconds(2);
    public static readonly TimeSpan DefaultRequestTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The VMM rejects requests longer than this; replies are bounded the same way here.</summary>
    private const int MaximumLineBytes = 1 << 20;

    private readonly Socket _socket;
    private byte[] _buffer = new byte[16 * 1024];
    private int _start;
    private int _end;
    private long _nextId = 1;
    private bool _detached;

    private VmmClient(Socket socket, string socketPath, TimeSpan requestTimeout)
    {
        _socket = socket;
        SocketPath = socketPath;
        RequestTimeout = requestTimeout;
    }

    public string SocketPath { get; }

    /// <summary>How long to wait for each reply.</summary>
    public TimeSpan RequestTimeout { get; set; }

    /// <summary>Connects; throws <see cref="VmmNotRunningException"/> if no VMM listens on <paramref name="socketPath"/>.</summary>
    public static VmmClient Connect(string socketPath, TimeSpan? connectTimeout = null, TimeSpan? requestTimeout = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(socketPath);
        if (!File.Exists(socketPath))
            throw new VmmNotRunningException(socketPath, "the control socket does not exist");
        var timeout = connectTimeout ?? DefaultConnectTimeout;
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cts.Token).AsTask().GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                throw new VmmTimeoutException(socketPath, "connect", timeout);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.AccessDenied)
            {
                throw new VmmException($"Permission denied connecting to kvmps-vmm on '{socketPath}'", socketPath, e);
            }
            catch (SocketException e)
            {
                // ECONNREFUSED: a socket file left by a VMM that died; ENOENT: removed meanwhile.
                throw new VmmNotRunningException(socketPath, e.Message, e);
            }
            return new VmmClient(socket, socketPath, requestTimeout ?? DefaultRequestTimeout);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    // ---- typed requests: the records of KvmPS.Contract -----------------------------------------------

    /// <summary>Returns the <c>pong</c> value (<c>kvmps-vmm</c>).</summary>
    public string Ping() => Send(new PingRequest(), ContractJsonContext.Default.PingReply).Pong;

    public DescribeReply Describe() => Send(new DescribeRequest(), ContractJsonContext.Default.DescribeReply);

    public VmmStatus Status() => VmmStatus.From(Send(new StatusRequest(), ContractJsonContext.Default.StatusReply));

    public MetricsReply Metrics() => Send(new MetricsRequest(), ContractJsonContext.Default.MetricsReply);

    /// <summary>Pauses a running VM (no-op if paused); returns once every vCPU is parked.</summary>
    public VmmStatus Pause() => VmmStatus.From(Send(new PauseRequest(), ContractJsonContext.Default.StatusReply));

    /// <summary>Resumes a paused VM (no-op if running).</summary>
    public VmmStatus Resume() => VmmStatus.From(Send(new ResumeRequest(), ContractJsonContext.Default.StatusReply));

    /// <summary>
    /// Stops the VM. Graceful presses the ACPI power button (if the guest enabled it) and waits up to
    /// <paramref name="gracefulTimeout"/> (default 10 s) before stopping by force. The VMM process exits after replying.
    /// </summary>
    public VmmStopResult Stop(bool graceful = true, TimeSpan? gracefulTimeout = null)
    {
        var wait = gracefulTimeout ?? TimeSpan.FromSeconds(10);
        var request = new StopRequest { Graceful = graceful, TimeoutMs = (int)Math.Clamp(wait.TotalMilliseconds, 0, int.MaxValue) };
        return VmmStopResult.From(Send(request, ContractJsonContext.Default.StopReply, (graceful ? wait : TimeSpan.Zero) + RequestTimeout));
    }

    /// <summary>Sets the balloon size: <paramref name="targetBytes"/> is what is taken from the guest (VM with a balloon).</summary>
    public BalloonStateReply SetBalloon(long targetBytes) =>
        Send(new BalloonSetRequest { TargetBytes = targetBytes }, ContractJsonContext.Default.BalloonStateReply);

    /// <summary>
    /// Asks for <paramref name="count"/> vCPUs (ACPI CPU hot-plug, VM running or paused): the VMM adds vCPUs up to its
    /// <c>max_vcpus</c> or asks the guest to eject the highest ones, and replies once the event is raised.
    /// </summary>
    public VcpuSetReply SetVcpus(int count) =>
        Send(new VcpuSetRequest { Count = count }, ContractJsonContext.Default.VcpuSetReply);

    /// <summary>
    /// Hot-plugs a virtio-blk or virtio-net device (ACPI PCI hot-plug; VM running or paused). With
    /// <paramref name="driverTimeout"/> the VMM waits that long for the guest driver to enable it.
    /// </summary>
    public DeviceAddReply AddDevice(DeviceSpec device, string? pci = null, TimeSpan? driverTimeout = null) =>
        Send(new DeviceAddRequest { Device = device, Pci = pci, TimeoutMs = TimeoutMs(driverTimeout) },
             ContractJsonContext.Default.DeviceAddReply, (driverTimeout ?? TimeSpan.Zero) + RequestTimeout);

    /// <summary>
    /// As <see cref="AddDevice(DeviceSpec, string?, TimeSpan?)"/>, with open files the device uses instead of its path
    /// (<see cref="VmmPassedFiles"/>; docs/vmm.md "Passing open files"), sent with the request line (SCM_RIGHTS). The
    /// files stay the caller's: the VMM holds its own descriptors once it answered.
    /// </summary>
    public DeviceAddReply AddDevice(DeviceSpec device, IReadOnlyList<System.Runtime.InteropServices.SafeHandle> files, string? pci = null, TimeSpan? driverTimeout = null) =>
        Send(new DeviceAddRequest { Device = device, Pci = pci, TimeoutMs = TimeoutMs(driverTimeout), PassedFiles = files.Count == 0 ? null : files.Count },
             ContractJsonContext.Default.DeviceAddReply, (driverTimeout ?? TimeSpan.Zero) + RequestTimeout, files);

    /// <summary>
    /// media.change: inserts <paramref name="path"/> into the drive at <paramref name="pci"/> (null: ejects), with the
    /// ISO open in <paramref name="files"/> (<see cref="VmmPassedFiles.OpenIso"/>; none: the VMM opens the path). The
    /// files stay the caller's.
    /// </summary>
    public MediaStateReply ChangeMedia(string pci, string? path, IReadOnlyList<System.Runtime.InteropServices.SafeHandle> files) =>
        Send(new MediaChangeRequest { Pci = pci, Path = path, PassedFiles = files.Count == 0 ? null : files.Count },
             ContractJsonContext.Default.MediaStateReply, RequestTimeout, files);

    /// <summary>
    /// Asks the guest to eject the device at <paramref name="pci"/>; with <paramref name="ejectTimeout"/> waits that long
    /// for it (<see cref="DeviceRemoveReply.State"/> says whether it went).
    /// </summary>
    public DeviceRemoveReply RemoveDevice(string pci, TimeSpan? ejectTimeout = null) =>
        Send(new DeviceRemoveRequest { Pci = pci, TimeoutMs = TimeoutMs(ejectTimeout) },
             ContractJsonContext.Default.DeviceRemoveReply, (ejectTimeout ?? TimeSpan.Zero) + RequestTimeout);

    private static int? TimeoutMs(TimeSpan? timeout) =>
        timeout is { } t ? (int)Math.Clamp(t.TotalMilliseconds, 0, 600_000) : null;

    /// <summary>
    /// Asks for <paramref name="totalBytes"/> of guest memory (virtio-mem; a VMM started with a memory maximum): from the
    /// boot memory up to that maximum in whole blocks. The VMM replies once the driver is told; the guest plugs or unplugs
    /// in its own time (<see cref="MemoryStateReply.PluggedBytes"/> follows).
    /// </summary>
    public MemoryStateReply SetMemory(long totalBytes) =>
        Send(new MemorySetRequest { Bytes = totalBytes }, ContractJsonContext.Default.MemoryStateReply);

    /// <summary>The virtio-mem sizes: boot memory, maximum, requested and plugged (a VMM started with a memory maximum).</summary>
    public MemoryStateReply GetMemory() => Send(new MemoryGetRequest(), ContractJsonContext.Default.MemoryStateReply);

    /// <summary>The balloon's size and the guest's memory statistics (VM with a balloon).</summary>
    public BalloonStateReply GetBalloon() => Send(new BalloonGetRequest(), ContractJsonContext.Default.BalloonStateReply);

    /// <summary>
    /// Starts a live migration to a <c>kvmps-vmm --incoming</c> at <paramref name="uri"/> (<c>unix:PATH</c> or
    /// <c>tcp:HOST:PORT</c>, docs/migration.md). Replies at once; <see cref="MigrateStatus"/> follows it.
    /// </summary>
    public MigrateStatusReply Migrate(string uri, int downtimeMs = 300) =>
        Send(new MigrateRequest { Uri = uri, DowntimeMs = downtimeMs }, ContractJsonContext.Default.MigrateStatusReply);

    /// <summary>
    /// As <see cref="Migrate(string, int)"/> to a <c>unix:</c> <paramref name="uri"/>, with the connection to it open in
    /// <paramref name="files"/> (<see cref="VmmPassedFiles.ConnectMigration"/>; none: the VMM connects to the path). The
    /// files stay the caller's.
    /// </summary>
    public MigrateStatusReply Migrate(string uri, IReadOnlyList<System.Runtime.InteropServices.SafeHandle> files, int downtimeMs = 300) =>
        Send(new MigrateRequest { Uri = uri, DowntimeMs = downtimeMs, PassedFiles = files.Count == 0 ? null : files.Count },
             ContractJsonContext.Default.MigrateStatusReply, RequestTimeout, files);

    /// <summary>The current (or last) migration's phase and progress (phase <c>none</c> before any).</summary>
    public MigrateStatusReply MigrateStatus() => Send(new MigrateStatusRequest(), ContractJsonContext.Default.MigrateStatusReply);

    /// <summary>Stops the migration under way; the VM runs on where it was (refused once it is handing over).</summary>
    public MigrateStatusReply MigrateCancel() => Send(new MigrateCancelRequest(), ContractJsonContext.Default.MigrateStatusReply);

    /// <summary>
    /// Takes a snapshot of the running or paused VM into <see cref="SnapshotCreateRequest.Path"/> (docs/vmm.md).
    /// <paramref name="timeout"/> bounds the wait for the reply (writing guest memory takes time).
    /// </summary>
    public SnapshotCreateReply CreateSnapshot(SnapshotCreateRequest request, TimeSpan timeout) =>
        Send(request, ContractJsonContext.Default.SnapshotCreateReply, timeout);

    /// <summary>
    /// Attaches to the guest console (VM Running or Paused). After this the connection is a raw byte stream
    /// both ways; the returned stream owns it and this client can make no further requests. With
    /// <paramref name="replay"/> the last 64 KiB of console output come first. Reads on the stream block
    /// without timeout; dispose it to detach.
    /// </summary>
    public Stream AttachConsole(bool replay = true)
    {
        Send(new ConsoleAttachRequest { Replay = replay }, ContractJsonContext.Default.ConsoleAttachReply);
        _detached = true;
        _socket.ReceiveTimeout = 0;
        var leftover = _buffer.AsSpan(_start, _end - _start).ToArray();
        _start = _end = 0;
        return new VmmConsoleStream(_socket, leftover);
    }

    // ---- requests ------------------------------------------------------------------------------------

    /// <summary>Sends a request record and reads its reply record.</summary>
    public T Send<T>(ControlRequest request, JsonTypeInfo<T> reply, TimeSpan? timeout = null, IReadOnlyList<System.Runtime.InteropServices.SafeHandle>? files = null)
    {
        var result = Exchange(request.Request, id => ControlRequests.Serialize(request with { Id = IdElement(id) }), timeout, files);
        try
        {
            return ContractJson.ReadResult(result, reply, request.Request);
        }
        catch (ContractException e)
        {
            throw new VmmProtocolException(SocketPath, e.Message, e);
        }
    }

    /// <summary>
    /// Sends <c>{"id": n, "request": <paramref name="request"/>}</c> and returns a copy of the reply's <c>result</c>:
    /// for a request this client has no record for (a newer VMM's, or a test's).
    /// </summary>
    public JsonElement Request(string request, TimeSpan? timeout = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(request);
        return Exchange(request, id =>
        {
            var line = new ArrayBufferWriter<byte>(128);
            using (var writer = new Utf8JsonWriter(line))
            {
                writer.WriteStartObject();
                writer.WriteNumber("id", id);
                writer.WriteString("request", request);
                writer.WriteEndObject();
            }
            return line.WrittenSpan.ToArray();
        }, timeout) ?? default;
    }

    private static JsonElement IdElement(long id)
    {
        using var document = JsonDocument.Parse(id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return document.RootElement.Clone();
    }

    /// <summary>Sends the request line <paramref name="build"/> makes for the next id and returns the reply's <c>result</c>.</summary>
    private JsonElement? Exchange(string request, Func<long, byte[]> build, TimeSpan? timeout, IReadOnlyList<System.Runtime.InteropServices.SafeHandle>? files = null)
    {
        ObjectDisposedException.ThrowIf(_detached, this);
        var id = _nextId++;
        var line = build(id);
        var bytes = new byte[line.Length + 1];
        line.CopyTo(bytes, 0);
        bytes[^1] = (byte)'\n';
        Send(bytes, request, files);

        var replyTimeout = timeout ?? RequestTimeout;
        var replyLine = ReadLine(request, replyTimeout);
        ControlReply reply;
        try
        {
            reply = JsonSerializer.Deserialize(replyLine.Span, ContractJsonContext.Default.ControlReply)
                ?? throw new JsonException("the reply is null");
        }
        catch (JsonException e)
        {
            throw new VmmProtocolException(SocketPath, $"reply to '{request}' is not a reply object ({ContractJson.Explain(e)}): {Truncate(Encoding.UTF8.GetString(replyLine.Span))}", e);
        }
        if (reply.Id is { ValueKind: JsonValueKind.Number } replyId && (!replyId.TryGetInt64(out var n) || n != id))
            throw new VmmProtocolException(SocketPath, $"reply to '{request}' has id {replyId}, expected {id}");
        if (!reply.Ok)
            throw new VmmRequestException(reply.Error?.Code ?? "Unknown", reply.Error?.Message ?? "(no message)", SocketPath, request);
        return reply.Result;
    }

    public void Dispose()
    {
        if (!_detached)
            _socket.Dispose();
        _detached = true;
    }

    // ---- plumbing ----------------------------------------------------------------------------------

    private void Send(byte[] bytes, string request, IReadOnlyList<System.Runtime.InteropServices.SafeHandle>? files = null)
    {
        try
        {
            _socket.SendTimeout = (int)Math.Max(1, RequestTimeout.TotalMilliseconds);
            // Files travel with the line's first byte, so the VMM knows which request they came with.
            var sent = files is { Count: > 0 } ? KvmPS.Interop.UnixFdPassing.Send(_socket, bytes, files) : 0;
            while (sent < bytes.Length)
                sent += _socket.Send(bytes, sent, bytes.Length - sent, SocketFlags.None);
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            throw new VmmTimeoutException(SocketPath, $"sending '{request}'", RequestTimeout);
        }
        catch (SocketException e)
        {
            throw new VmmNotRunningException(SocketPath, $"the connection broke while sending '{request}' ({e.Message})", e);
        }
        catch (KvmPS.Interop.NativeCallException e)
        {
            throw new VmmNotRunningException(SocketPath, $"the connection broke while sending '{request}' with its files ({e.Message})", e);
        }
    }

    private ReadOnlyMemory<byte> ReadLine(string request, TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        var scanned = _start;
        while (true)
        {
            var newline = Array.IndexOf(_buffer, (byte)'\n', scanned, _end - scanned);
            if (newline >= 0)
            {
                var line = _buffer.AsMemory(_start, newline - _start);
                _start = newline + 1;
                // The caller consumes the line before the next read can move the buffer.
                return line.ToArray();
            }
            scanned = _end;
            if (_end == _buffer.Length)
            {
                if (_start > 0)
                {
                    Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                    _end -= _start;
                    scanned -= _start;
                    _start = 0;
                }
                else if (_buffer.Length >= MaximumLineBytes)
                    throw new VmmProtocolException(SocketPath, $"reply to '{request}' is longer than {MaximumLineBytes} bytes");
                else
                    Array.Resize(ref _buffer, _buffer.Length * 2);
            }
            var remaining = deadline - Environment.TickCount64;
            if (remaining <= 0)
                throw new VmmTimeoutException(SocketPath, $"'{request}'", timeout);
            int received;
            try
            {
                _socket.ReceiveTimeout = (int)Math.Min(int.MaxValue, Math.Max(1, remaining));
                received = _socket.Receive(_buffer, _end, _buffer.Length - _end, SocketFlags.None);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
            {
                throw new VmmTimeoutException(SocketPath, $"'{request}'", timeout);
            }
            catch (SocketException e)
            {
                throw new VmmNotRunningException(SocketPath, $"the connection broke waiting for the reply to '{request}' ({e.Message})", e);
            }
            if (received == 0)
                throw new VmmNotRunningException(SocketPath, $"the VMM closed the connection before replying to '{request}'");
            _end += received;
        }
    }

    private static string Truncate(string text) => text.Length <= 200 ? text : text[..200] + "…";
}

/// <summary>The console byte stream after <c>console.attach</c>: bytes already buffered by the client first, then the socket.</summary>
internal sealed class VmmConsoleStream : Stream
{
    private readonly Socket _socket;
    private readonly NetworkStream _inner;
    private readonly byte[] _prefix;
    private int _prefixOffset;

    public VmmConsoleStream(Socket socket, byte[] prefix)
    {
        _socket = socket;
        _inner = new NetworkStream(socket, ownsSocket: true);
        _prefix = prefix;
    }

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (TakePrefix(buffer) is var n and > 0)
            return n;
        return _inner.Read(buffer);
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (TakePrefix(buffer.Span) is var n and > 0)
            return ValueTask.FromResult(n);
        return _inner.ReadAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => _inner.Write(buffer, offset, count);
    public override void Write(ReadOnlySpan<byte> buffer) => _inner.Write(buffer);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        _inner.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        _inner.WriteAsync(buffer, offset, count, cancellationToken);

    public override void Flush() => _inner.Flush();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _inner.Dispose();
            _socket.Dispose();
        }
        base.Dispose(disposing);
    }

    private int TakePrefix(Span<byte> destination)
    {
        var available = _prefix.Length - _prefixOffset;
        if (available <= 0 || destination.IsEmpty)
            return 0;
        var n = Math.Min(available, destination.Length);
        _prefix.AsSpan(_prefixOffset, n).CopyTo(destination);
        _prefixOffset += n;
        return n;
    }
}
