using System.IO.Pipes;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.Interop;
using KvmPS.Vmm;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Engine.Tests.Vmm;

/// <summary>
/// Open files passed with a control request (SCM_RIGHTS; docs/vmm.md "Passing open files"): device.add gets exactly
/// the files that came with its line; a request that takes none, a count that does not match, or more than the
/// server takes is refused with the promised error reply; and every file the server got is closed unless a device
/// took it. A file is a pipe's write end here: the read end sees end of file once every copy of it is closed, which is
/// how a leak would show.
/// </summary>
public sealed class ControlServerPassedFilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kvmps-fds-").FullName;
    private readonly FilesControl _control = new();
    private readonly ControlServer _server;

    public ControlServerPassedFilesTests() => _server = ControlServer.Bind(Path.Combine(_dir, "c.sock"), _control);

    public void Dispose()
    {
        _server.Dispose();
        _control.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private Socket Connect()
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000 };
        s.Connect(new UnixDomainSocketEndPoint(Path.Combine(_dir, "c.sock")));
        return s;
    }

    /// <summary>A pipe whose write end is to be passed; this process's copy of it is closed once it was sent.</summary>
    private sealed class Pipe : IDisposable
    {
        public AnonymousPipeServerStream Reader { get; } = new(PipeDirection.In);
        public SafeHandle WriteEnd => Reader.ClientSafePipeHandle;
        public void Sent() => Reader.DisposeLocalCopyOfClientHandle();

        /// <summary>True when every copy of the write end is closed (a read gives end of file), within 5 s.</summary>
        public bool AllClosed()
        {
            var read = Task.Run(() => { var b = new byte[16]; while (Reader.Read(b) > 0) { } });
            return read.Wait(TimeSpan.FromSeconds(5));
        }

        public void Dispose() => Reader.Dispose();
    }

    private static JsonElement Send(Socket s, string line, IReadOnlyList<SafeHandle> files)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(line + "\n");
        int sent = files.Count == 0 ? 0 : UnixFdPassing.Send(s, bytes, files);
        while (sent < bytes.Length) sent += s.Send(bytes, sent, bytes.Length - sent, SocketFlags.None);
        var reply = new List<byte>();
        var one = new byte[1];
        while (s.Receive(one) == 1 && one[0] != '\n') reply.Add(one[0]);
        using var doc = JsonDocument.Parse(reply.ToArray());
        return doc.RootElement.Clone();
    }

    private static string Error(JsonElement reply, string code)
    {
        Assert.False(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        Assert.Equal(code, reply.GetProperty("error").GetProperty("code").GetString());
        return reply.GetProperty("error").GetProperty("message").GetString()!;
    }

    private const string AddBlock = """{"id": 1, "request": "device.add", "device": {"type": "block", "path": "/nowhere/d.raw"}""";

    [Fact]
    public void DeviceAddGetsExactlyThePassedFilesInOrderAndTheyStayOpenWhileTheDeviceHasThem()
    {
        using var first = new Pipe();
        using var second = new Pipe();
        using var s = Connect();
        var reply = Send(s, AddBlock + """, "passed_files": 2}""", [first.WriteEnd, second.WriteEnd]);
        first.Sent();
        second.Sent();
        Assert.True(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        var got = _control.Taken;
        Assert.Equal(2, got.Count);
        // In the order sent: the first file is the first pipe's write end.
        got[0].Write("a"u8);
        got[1].Write("b"u8);
        var buffer = new byte[1];
        Assert.Equal(1, first.Reader.Read(buffer));
        Assert.Equal((byte)'a', buffer[0]);
        Assert.Equal(1, second.Reader.Read(buffer));
        Assert.Equal((byte)'b', buffer[0]);
        // The device holds them: not closed until it lets them go.
        Assert.False(Task.Run(() => first.Reader.Read(buffer)).Wait(300));
        _control.Dispose();
        Assert.True(first.AllClosed());
        Assert.True(second.AllClosed());
        // The connection goes on, without files.
        Assert.True(Send(s, """{"request": "ping"}""", []).GetProperty("ok").GetBoolean());
    }

    [Fact]
    public void FilesOnARequestThatTakesNoneAreRefusedAndClosed()
    {
        using var pipe = new Pipe();
        using var s = Connect();
        string message = Error(Send(s, """{"id": 3, "request": "ping"}""", [pipe.WriteEnd]), ControlErrorCodes.InvalidArgument);
        pipe.Sent();
        Assert.Contains("'ping' takes no file descriptors, but 1 came with it", message);
        Assert.True(pipe.AllClosed());
        // device.add without passed_files takes none either.
        using var other = new Pipe();
        message = Error(Send(s, AddBlock + "}", [other.WriteEnd]), ControlErrorCodes.InvalidArgument);
        other.Sent();
        Assert.Contains("takes no file descriptors", message);
        Assert.True(other.AllClosed());
        Assert.Equal(0, _control.AddCalls);
    }

    [Fact]
    public void ACountThatDoesNotMatchWhatCameIsRefusedAndTheFilesClosed()
    {
        using var pipe = new Pipe();
        using var s = Connect();
        string message = Error(Send(s, AddBlock + """, "passed_files": 2}""", [pipe.WriteEnd]), ControlErrorCodes.InvalidArgument);
        pipe.Sent();
        Assert.Contains("\"passed_files\" is 2, but 1 file descriptors came with the request", message);
        Assert.True(pipe.AllClosed());
        // Files promised but none sent.
        message = Error(Send(s, AddBlock + """, "passed_files": 1}""", []), ControlErrorCodes.InvalidArgument);
        Assert.Contains("but 0 file descriptors came", message);
        message = Error(Send(s, AddBlock + """, "passed_files": -1}""", []), ControlErrorCodes.InvalidArgument);
        Assert.Contains("-1 is outside 0-16", message);
        Assert.Equal(0, _control.AddCalls);
    }

    [Fact]
    public void MoreFilesThanTheServerTakesAreRefusedAndNoneStaysOpen()
    {
        using var pipe = new Pipe();
        using var s = Connect();
        // 20 copies of one write end in one message: the server takes 16, the kernel closes the rest (MSG_CTRUNC).
        byte[] line = Encoding.UTF8.GetBytes(AddBlock + """, "passed_files": 16}""" + "\n");
        SendRaw(s, line, pipe.WriteEnd, 20);
        pipe.Sent();
        var reply = new List<byte>();
        var one = new byte[1];
        while (s.Receive(one) == 1 && one[0] != '\n') reply.Add(one[0]);
        using var doc = JsonDocument.Parse(reply.ToArray());
        Assert.Contains("more than 16 file descriptors came with the request", Error(doc.RootElement, ControlErrorCodes.InvalidArgument));
        Assert.True(pipe.AllClosed());
        Assert.Equal(0, _control.AddCalls);
    }

    [Fact]
    public void FilesOfARequestThatFailsOrIsMalformedOrNeverEndsAreClosed()
    {
        using var s = Connect();
        using (var pipe = new Pipe())
        {
            _control.Refuse = true; // the device refuses (a bad image, say) without taking them
            Assert.Contains("refused by the test", Error(Send(s, AddBlock + """, "passed_files": 1}""", [pipe.WriteEnd]), ControlErrorCodes.InvalidArgument));
            pipe.Sent();
            Assert.True(pipe.AllClosed());
        }
        using (var pipe = new Pipe())
        {
            Error(Send(s, "{\"request\": \"device.add\",", [pipe.WriteEnd]), ControlErrorCodes.MalformedRequest);
            pipe.Sent();
            Assert.True(pipe.AllClosed());
        }
        using (var pipe = new Pipe())
        {
            // No newline, then the client goes: the files came with no request.
            using var gone = Connect();
            UnixFdPassing.Send(gone, "{\"request\": \"device.add\""u8, [pipe.WriteEnd]);
            pipe.Sent();
            gone.Dispose();
            Assert.True(pipe.AllClosed());
        }
    }

    /// <summary>One sendmsg with <paramref name="copies"/> copies of <paramref name="fd"/> (beyond UnixFdPassing's limit).</summary>
    private static unsafe void SendRaw(Socket s, byte[] data, SafeHandle fd, int copies)
    {
        int space = Libc.CmsgSpaceForFds(copies);
        byte* control = stackalloc byte[space];
        new Span<byte>(control, space).Clear();
        var header = (cmsghdr*)control;
        header->cmsg_len = (nuint)Libc.CmsgLenForFds(copies);
        header->cmsg_level = Libc.SOL_SOCKET;
        header->cmsg_type = Libc.SCM_RIGHTS;
        int* slots = (int*)(control + sizeof(cmsghdr));
        for (int i = 0; i < copies; i++) slots[i] = (int)fd.DangerousGetHandle();
        fixed (byte* p = data)
        {
            var iov = new iovec { iov_base = p, iov_len = (nuint)data.Length };
            var message = new msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = (nuint)space };
            Assert.Equal(data.Length, (int)Libc.Sendmsg(s.Handle, &message, Libc.MSG_NOSIGNAL));
        }
    }

    /// <summary>A control whose device.add keeps the files it gets (as a device does) or refuses without taking them.</summary>
    private sealed class FilesControl : IVmmControl, IDisposable
    {
        private readonly List<FileStream> _taken = [];
        private int _addCalls;
        public int AddCalls => _addCalls;
        public bool Refuse { get; set; }
        public IReadOnlyList<FileStream> Taken { get { lock (_taken) return [.. _taken]; } }
        public ConsoleHub Console { get; } = new(_ => { });

        public DeviceAddReply AddDevice(DeviceAddRequest request, PassedFiles files)
        {
            Interlocked.Increment(ref _addCalls);
            if (Refuse) throw new ArgumentException("device.add: refused by the test");
            lock (_taken) foreach (var f in files.TakeAll()) _taken.Add(new FileStream(f, FileAccess.Write, 1));
            return new DeviceAddReply { Device = new DeviceDescription { Pci = "00:05.0", Type = "block" } };
        }

        public void Dispose() { lock (_taken) { foreach (var f in _taken) f.Dispose(); _taken.Clear(); } }
        public DescribeReply Describe() => new() { Vmm = "kvmps-vmm", Version = "test" };
        public StatusReply Status() => new() { State = "Running" };
        public MetricsReply Metrics() => new();
        public void Pause() { }
        public void Resume() { }
        public StopReply Stop(StopRequest request) => new() { State = "Stopped" };
        public void StopReplySent() { }
        public bool TryHandleDeviceRequest(ControlRequest request, out JsonElement result) { result = default; return false; }
        public void CheckConsoleAttach() => throw new InvalidOperationException("no console in this test");
        public void ConsoleInput(ReadOnlySpan<byte> data) { }
    }
}
