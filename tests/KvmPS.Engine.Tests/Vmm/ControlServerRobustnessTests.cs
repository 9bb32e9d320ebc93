using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Vmm;

namespace KvmPS.Engine.Tests.Vmm;

/// <summary>
/// The control socket stays usable whatever its clients do (issue 17): trickling and non-reading clients are
/// dropped, idle clients cannot lock management out, duplicate keys and undecodable ids get the promised error
/// reply, and only root and the VMM's own user are served. In-process, over a real Unix socket.
/// </summary>
public sealed class ControlServerRobustnessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kvmps-ctl-").FullName;
    private readonly FakeControl _control = new();
    private ControlServer? _server;

    private string SocketPath => Path.Combine(_dir, "c.sock");

    private ControlServer Start(ControlServerLimits? limits = null) => _server = ControlServer.Bind(SocketPath, _control, limits);

    public void Dispose()
    {
        _server?.Dispose();
        _control.Release.Set();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private Socket Connect()
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000 };
        s.Connect(new UnixDomainSocketEndPoint(SocketPath));
        return s;
    }

    private static void SendLine(Socket s, string line) => s.Send(Encoding.UTF8.GetBytes(line + "\n"));

    /// <summary>The next reply line, or null at end of stream.</summary>
    private static JsonElement? ReadReply(Socket s)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (true)
        {
            int n = s.Receive(one);
            if (n == 0) return bytes.Count == 0 ? null : throw new IOException("connection closed mid-line");
            if (one[0] == '\n') break;
            bytes.Add(one[0]);
        }
        using var doc = JsonDocument.Parse(bytes.ToArray());
        return doc.RootElement.Clone();
    }

    private static string ErrorCode(JsonElement reply) => reply.GetProperty("error").GetProperty("code").GetString()!;
    private static string ErrorMessage(JsonElement reply) => reply.GetProperty("error").GetProperty("message").GetString()!;

    [Fact]
    public void ADuplicateKeyIsRefusedNamingItAndNothingIsDone()
    {
        Start();
        using var s = Connect();
        SendLine(s, """{"id": 7, "request": "ping", "request": "stop"}""");
        var reply = ReadReply(s)!.Value;
        Assert.False(reply.GetProperty("ok").GetBoolean());
        Assert.Equal(ControlErrorCodes.InvalidArgument, ErrorCode(reply));
        Assert.Contains("'request'", ErrorMessage(reply));
        Assert.Equal(7, reply.GetProperty("id").GetInt32());
        Assert.Equal(0, _control.StopCalls);
        // A duplicate inside an argument object is named by its path.
        SendLine(s, """{"request": "stop", "graceful": true, "timeout_ms": 5, "timeout_ms": 6}""");
        reply = ReadReply(s)!.Value;
        Assert.Equal(ControlErrorCodes.InvalidArgument, ErrorCode(reply));
        Assert.Contains("'timeout_ms'", ErrorMessage(reply));
        Assert.Equal(0, _control.StopCalls);
        SendLine(s, """{"request": "ping"}""");
        Assert.True(ReadReply(s)!.Value.GetProperty("ok").GetBoolean());
    }

    [Fact]
    public void AnIdWithALoneSurrogateGetsTheErrorReplyAndTheConnectionStaysOpen()
    {
        Start();
        using var s = Connect();
        SendLine(s, """{"id": "\ud800", "request": "ping"}""");
        var reply = ReadReply(s);
        Assert.NotNull(reply);
        Assert.False(reply.Value.GetProperty("ok").GetBoolean());
        Assert.Equal(ControlErrorCodes.MalformedRequest, ErrorCode(reply.Value));
        Assert.Contains("id", ErrorMessage(reply.Value));
        // The same in a key and in an argument value.
        SendLine(s, """{"request": "ping", "\udc00x": 1}""");
        Assert.Equal(ControlErrorCodes.MalformedRequest, ErrorCode(ReadReply(s)!.Value));
        SendLine(s, """{"id": 3, "request": "ping"}""");
        reply = ReadReply(s);
        Assert.True(reply!.Value.GetProperty("ok").GetBoolean());
        Assert.Equal(3, reply.Value.GetProperty("id").GetInt32());
    }

    [Theory]
    [InlineData("{\"request\": \"ping\",}", "at byte 19: ")]
    [InlineData("\u00ff", "at byte 0: ")]
    [InlineData("{\"request\": \"ping\"", "at byte 18: ")]
    public void MalformedJsonIsDescribedInWordsWithItsPosition(string line, string expected)
    {
        Start();
        using var s = Connect();
        SendLine(s, line);
        var reply = ReadReply(s)!.Value;
        Assert.Equal(ControlErrorCodes.MalformedRequest, ErrorCode(reply));
        Assert.StartsWith("malformed JSON at byte ", ErrorMessage(reply));
        Assert.Contains(expected, ErrorMessage(reply));
        Assert.DoesNotContain("LineNumber", ErrorMessage(reply));
        SendLine(s, """{"request": "ping"}""");
        Assert.True(ReadReply(s)!.Value.GetProperty("ok").GetBoolean());
    }

    [Theory]
    [InlineData("ExpectedStartOfValueNotFound, 0xFF LineNumber: 0 | BytePositionInLine: 0.", "a value was expected")]
    [InlineData("TrailingCommaNotAllowedBeforeObjectEnd LineNumber: 0 | BytePositionInLine: 19.", "a trailing comma")]
    [InlineData("ArrayDepthTooLarge, 64 LineNumber: 0 | BytePositionInLine: 64.", "nested too deeply (at most 64 levels)")]
    [InlineData("SomethingNew, x", "not valid JSON")]
    [InlineData("'}' is an invalid start of a value. LineNumber: 0 | BytePositionInLine: 3.", "'}' is an invalid start of a value.")]
    public void TheTrimmedVmmsResourceKeysBecomeWords(string message, string expected)
    {
        // kvmps-vmm is built with UseSystemResourceKeys: System.Text.Json's messages are these keys there.
        var text = ControlServer.MalformedJson(new JsonException(message, null, 0, 7));
        Assert.Equal($"malformed JSON at byte 7: {expected}", text);
    }

    [Fact]
    public void AClientThatTricklesBytesIsDroppedAfterTheRequestReadTimeout()
    {
        Start(new ControlServerLimits { RequestReadTimeoutMs = 600 });
        using var s = Connect();
        var watch = Stopwatch.StartNew();
        var closed = false;
        // One byte every 100 ms never lets the socket go idle for long, but the line never ends in time.
        foreach (char c in """{"request": "ping", "padding": "..............................................."}""")
        {
            try { s.Send([(byte)c]); }
            catch (SocketException) { closed = true; break; }
            Thread.Sleep(100);
            if (s.Poll(0, SelectMode.SelectRead)) { closed = true; break; }
        }
        Assert.True(closed, "the trickling client was never dropped");
        var reply = ReadReply(s);
        Assert.NotNull(reply);
        Assert.Equal(ControlErrorCodes.MalformedRequest, ErrorCode(reply.Value));
        Assert.Contains("600 ms", ErrorMessage(reply.Value));
        Assert.Null(ReadReply(s)); // then closed
        Assert.InRange(watch.ElapsedMilliseconds, 500, 5000);
    }

    [Fact]
    public void AClientThatNeverReadsItsRepliesIsDroppedAndDoesNotBlockOthers()
    {
        var server = Start(new ControlServerLimits { SendTimeoutMs = 500 });
        using var greedy = Connect();
        greedy.Blocking = false;
        var request = Encoding.UTF8.GetBytes("{\"request\": \"ping\", \"id\": 1234567890}\n");
        var watch = Stopwatch.StartNew();
        var dropped = false;
        while (watch.Elapsed < TimeSpan.FromSeconds(20) && !dropped)
        {
            try { greedy.Send(request); }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock) { Thread.Sleep(20); }
            catch (SocketException) { dropped = true; }
            if (server.ConnectionCount == 0) dropped = true;
        }
        Assert.True(dropped, "a client that never reads kept its connection (the server blocks in send)");
        using var other = Connect();
        SendLine(other, """{"request": "ping"}""");
        Assert.True(ReadReply(other)!.Value.GetProperty("ok").GetBoolean());
    }

    [Fact]
    public void IdleClientsFillingEverySlotCannotLockOutManagement()
    {
        var server = Start();
        var idle = new List<Socket>();
        try
        {
            for (int i = 0; i < ControlServer.MaxClients; i++) { idle.Add(Connect()); Thread.Sleep(2); }
            Assert.True(SpinWait.SpinUntil(() => server.ConnectionCount == ControlServer.MaxClients, 5000));
            using var management = Connect();
            SendLine(management, """{"request": "ping"}""");
            var reply = ReadReply(management)!.Value;
            Assert.True(reply.GetProperty("ok").GetBoolean(), reply.ToString());
            // The connection idle longest made room: it was closed without a word.
            Assert.Null(ReadReply(idle[0]));
            Assert.Equal(ControlServer.MaxClients, server.ConnectionCount);
        }
        finally { foreach (var s in idle) s.Dispose(); }
    }

    [Fact]
    public void WhenEverySlotIsCarryingOutARequestANewClientIsToldBusy()
    {
        var server = Start(new ControlServerLimits { MaxClients = 2 });
        using var a = Connect();
        using var b = Connect();
        SendLine(a, """{"request": "status"}""");
        SendLine(b, """{"request": "status"}""");
        Assert.True(SpinWait.SpinUntil(() => _control.StatusWaiting == 2, 5000));
        using var c = Connect();
        var reply = ReadReply(c)!.Value;
        Assert.Equal(ControlErrorCodes.Busy, ErrorCode(reply));
        Assert.Null(ReadReply(c));
        _control.Release.Set();
        Assert.True(ReadReply(a)!.Value.GetProperty("ok").GetBoolean());
        Assert.True(ReadReply(b)!.Value.GetProperty("ok").GetBoolean());
        Assert.Equal(2, server.ConnectionCount);
    }

    [Fact]
    public void PeerCredentialsComeFromTheKernel()
    {
        Start();
        using var s = Connect();
        // Our own end's peer is the server; both are this process.
        var peer = ControlPeer.Credentials(s);
        Assert.NotNull(peer);
        Assert.Equal(Environment.ProcessId, peer.Value.Pid);
        Assert.Equal(KvmPS.Interop.Libc.GetEuid(), peer.Value.Uid);
        Assert.True(ControlPeer.IsAllowed(0, 1000));
        Assert.True(ControlPeer.IsAllowed(1000, 1000));
        Assert.False(ControlPeer.IsAllowed(65534, 1000));
        Assert.False(ControlPeer.IsAllowed(65534, 0));
    }

    [Fact]
    public void AnotherUserIsRefusedEvenWhenTheSocketModeWouldLetItIn()
    {
        if (KvmPS.Interop.Libc.GetEuid() != 0 || !File.Exists("/usr/bin/setpriv") || !File.Exists("/usr/bin/socat"))
            return; // needs root, setpriv and socat to connect as another user
        Start();
        // Widen everything so only SO_PEERCRED stands between nobody and the VMM.
        File.SetUnixFileMode(_dir, (UnixFileMode)0x1ed); // 0755
        File.SetUnixFileMode(SocketPath, (UnixFileMode)0x1b6); // 0666
        var psi = new ProcessStartInfo("/usr/bin/setpriv") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/socat", "-t", "2", "-", "UNIX-CONNECT:" + SocketPath })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.WriteLine("""{"request": "ping"}""");
        p.StandardInput.Flush();
        Assert.True(p.WaitForExit(10_000));
        p.StandardInput.Close();
        string output = p.StandardOutput.ReadToEnd();
        Assert.DoesNotContain("pong", output);
        Assert.Contains(ControlErrorCodes.PermissionDenied, output);
        Assert.Contains("uid 65534", output);
        // Root still is.
        using var s = Connect();
        SendLine(s, """{"request": "ping"}""");
        Assert.True(ReadReply(s)!.Value.GetProperty("ok").GetBoolean());
    }

    /// <summary>Answers ping and stop; status waits for <see cref="Release"/> so tests can hold connections busy.</summary>
    private sealed class FakeControl : IVmmControl
    {
        private int _stopCalls, _statusWaiting;
        public int StopCalls => _stopCalls;
        public int StatusWaiting => _statusWaiting;
        public ManualResetEventSlim Release { get; } = new(false);
        public ConsoleHub Console { get; } = new(_ => { });

        public DescribeReply Describe() => new() { Vmm = "kvmps-vmm", Version = "test" };
        public StatusReply Status()
        {
            Interlocked.Increment(ref _statusWaiting);
            Release.Wait(TimeSpan.FromSeconds(30));
            return new StatusReply { State = "Running" };
        }
        public MetricsReply Metrics() => new();
        public void Pause() { }
        public void Resume() { }
        public StopReply Stop(StopRequest request) { Interlocked.Increment(ref _stopCalls); return new StopReply { State = "Stopped", Outcome = "Forced", Forced = true }; }
        public void StopReplySent() { }
        public bool TryHandleDeviceRequest(ControlRequest request, out JsonElement result) { result = default; return false; }
        public void CheckConsoleAttach() => throw new InvalidOperationException("no console in this test");
        public void ConsoleInput(ReadOnlySpan<byte> data) { }
    }
}
