using System.Text;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Lifecycle;

[Collection(VmmCollection.Name)]
public sealed class VmmClientTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;

    public VmmClientTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose() => _sandbox.Dispose();

    [Fact]
    public void Missing_socket_is_not_running()
    {
        var error = Assert.Throws<VmmNotRunningException>(() => VmmClient.Connect(Path.Combine(_sandbox.Root, "nothing.sock")));
        Assert.Contains("does not exist", error.Message);
    }

    [Fact]
    public void Stale_socket_file_is_not_running()
    {
        var path = Path.Combine(_sandbox.Root, "stale.sock");
        using (var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
            listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path)); // bound, never listening, closed: connect is refused
        Assert.Throws<VmmNotRunningException>(() => VmmClient.Connect(path));
    }

    [Fact]
    public void Typed_requests_errors_and_console()
    {
        _sandbox.Manager.New(TestDefinitions.Minimal("probe") with { Vcpus = new(1, 2) });
        var info = _sandbox.Manager.Start("probe");
        LifecycleSandbox.WaitForSerial(info.SerialLogPath, "ready");

        using (var client = VmmClient.Connect(info.SocketPath))
        {
            Assert.Equal("kvmps-vmm", client.Ping());
            var description = client.Describe();
            Assert.Equal(info.Pid, description.Pid);
            Assert.Equal(2, description.MaxVcpus);
            Assert.Equal(KvmPS.Contract.GuestCrashAction.Stay, description.OnCrash);
            Assert.Equal("file:" + info.SerialLogPath, description.Serial);
            Assert.Contains("console.attach", description.Requests);

            var status = client.Status();
            Assert.Equal(VmmState.Running, status.State);
            Assert.Single(status.Vcpus);
            Assert.Null(status.Exit);

            var metrics = client.Metrics();
            Assert.True(metrics.RssBytes > 0);
            Assert.True(metrics.ConsoleBytes > 0);

            var unknown = Assert.Throws<VmmRequestException>(() => client.Request("warp"));
            Assert.Equal("UnknownRequest", unknown.Code);
            Assert.Equal(info.SocketPath, unknown.SocketPath);
            Assert.Equal(VmmState.Paused, client.Pause().State);
            Assert.Equal(VmmState.Running, client.Resume().State);
        }

        using (var client = VmmClient.Connect(info.SocketPath))
        using (var console = client.AttachConsole(replay: true))
        {
            var seen = ReadUntil(console, "ready");
            Assert.Contains("KvmPS built-in guest v1", seen);
            console.Write(Encoding.ASCII.GetBytes("info\r"));
            Assert.Contains("memory: 256 MiB", ReadUntil(console, "memory: 256 MiB"));
        }

        using (var client = VmmClient.Connect(info.SocketPath))
        {
            var stop = client.Stop(graceful: false);
            Assert.True(stop.Forced);
        }
        LifecycleSandbox.WaitFor(() => _sandbox.Manager.Get("probe"), v => v.State == VmState.Off, "stop");
    }

    private static string ReadUntil(Stream stream, string text)
    {
        var seen = new StringBuilder();
        var buffer = new byte[4096];
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!seen.ToString().Contains(text, StringComparison.Ordinal))
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"'{text}' not seen; got: {seen}");
            var task = stream.ReadAsync(buffer, 0, buffer.Length);
            if (!task.Wait(TimeSpan.FromSeconds(10)))
                throw new TimeoutException($"'{text}' not seen; got: {seen}");
            if (task.Result == 0)
                throw new EndOfStreamException(seen.ToString());
            seen.Append(Encoding.UTF8.GetString(buffer, 0, task.Result));
        }
        return seen.ToString();
    }
}
