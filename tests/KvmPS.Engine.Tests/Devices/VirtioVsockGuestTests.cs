using System.Net.Sockets;
using System.Text;
using KvmPS.Devices;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Vsock;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vm;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>The built-in guest's vsock driver against the real engine, both directions through host Unix sockets.</summary>
public class VirtioVsockGuestTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string ReadAll(Socket s, TimeSpan timeout)
    {
        var sb = new StringBuilder();
        var b = new byte[256];
        s.ReceiveTimeout = (int)timeout.TotalMilliseconds;
        try { int n; while ((n = s.Receive(b)) > 0) sb.Append(Encoding.ASCII.GetString(b, 0, n)); }
        catch (SocketException e) { sb.Append($"<{e.SocketErrorCode}>"); }
        return sb.ToString();
    }

    private static string ReadLine(Socket s)
    {
        var sb = new StringBuilder();
        var b = new byte[1];
        s.ReceiveTimeout = 30000;
        while (s.Receive(b) == 1 && b[0] != '\n') sb.Append((char)b[0]);
        return sb.ToString();
    }

    [Fact]
    public void HostConnectsToAGuestListenerAndGetsItsEcho()
    {
        using var dir = new TempDir();
        string uds = dir.File("v.sock");
        var deviceLog = new List<string>();
        using var run = new GuestRun(new MachineConfig
        {
            Devices = [new VsockDeviceConfig { GuestCid = 3, UdsPath = uds }],
            Cmdline = "kvmps.run=vsock listen 1234,exit 0",
            DeviceLog = m => { lock (deviceLog) deviceLog.Add(m); },
        });
        run.Machine.Start();
        try
        {
            Assert.True(run.WaitForOutput("vsock: listening on 1234 (cid 3)", Timeout), run.Output);
            using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            s.Connect(new UnixDomainSocketEndPoint(uds));
            s.Send("CONNECT 1234\n"u8);
            string ok = ReadLine(s);
            Assert.Matches(@"^OK \d+$", ok);
            s.Send("hello"u8);
            string echoed = ReadAll(s, TimeSpan.FromSeconds(30)); // the guest echoes once, then shuts down: EOF
            Assert.Equal("hello", echoed);
            Assert.True(run.Machine.Exited.Wait(Timeout), run.Output);
            Assert.Contains("vsock: echoed 5", run.Output);
            Assert.Contains("vsock: closed\r\n", run.Output);
        }
        finally
        {
            log.WriteLine(run.Output);
            lock (deviceLog) foreach (var l in deviceLog) log.WriteLine("device: " + l);
        }
    }

    [Fact]
    public void GuestConnectsToAHostListener()
    {
        using var dir = new TempDir();
        string uds = dir.File("v.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(uds + "_5000"));
        listener.Listen(4);
        var server = Task.Run(() =>
        {
            using var c = listener.Accept();
            var b = new byte[64];
            int n = c.Receive(b);
            string got = Encoding.ASCII.GetString(b, 0, n);
            c.Send(Encoding.ASCII.GetBytes("world:" + got));
            return got + "|" + ReadAll(c, TimeSpan.FromSeconds(30)); // then EOF once the guest shuts down
        });
        using var run = new GuestRun(new MachineConfig
        {
            Devices = [new VsockDeviceConfig { GuestCid = 7, UdsPath = uds }],
            Cmdline = "kvmps.run=vsock connect 5000 hello,vsock connect 5001 nobody,exit 0",
        });
        var exit = run.RunToExit(Timeout);
        log.WriteLine(run.Output);
        Assert.Equal(VmExitKind.DebugExit, exit.Kind);
        Assert.Contains("vsock: reply world:hello", run.Output);
        Assert.Contains("vsock: closed\r\n", run.Output);
        Assert.Contains("vsock: connection refused", run.Output); // nothing listens on v.sock_5001
        Assert.True(server.Wait(Timeout));
        Assert.Equal("hello|", server.Result);
    }
}
