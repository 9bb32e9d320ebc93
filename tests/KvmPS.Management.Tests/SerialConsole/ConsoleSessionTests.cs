using System.Text;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.SerialConsole;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.SerialConsole;

/// <summary>The one console session behind Connect-KvmConsole and kvmps vm console, against a real VMM.</summary>
[Collection(VmmCollection.Name)]
public sealed class ConsoleSessionTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;

    public ConsoleSessionTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose() => _sandbox.Dispose();

    /// <summary>Types keys (as .NET reports them) once the output shows what each waits for.</summary>
    private sealed class ScriptedKeys(MemoryStream output, params (string WaitFor, ConsoleKeyInfo[] Keys)[] steps) : IConsoleInput
    {
        private int _step;

        public byte[]? Read(TimeSpan wait)
        {
            Thread.Sleep(wait / 4);
            if (_step >= steps.Length)
                return Array.Empty<byte>();
            string text;
            lock (output)
                text = Encoding.UTF8.GetString(output.ToArray());
            if (!text.Contains(steps[_step].WaitFor, StringComparison.Ordinal))
                return Array.Empty<byte>();
            return steps[_step++].Keys.SelectMany(ConsoleKeys.ToBytes).ToArray();
        }

        public void Dispose()
        {
        }
    }

    private static ConsoleKeyInfo[] Type(string text) =>
        text.Select(c => c == '\r' ? new ConsoleKeyInfo('\r', ConsoleKey.Enter, false, false, false) : new ConsoleKeyInfo(c, default, false, false, false)).ToArray();

    [Fact]
    public async Task Typing_reaches_the_guest_and_ctrl_bracket_as_dotnet_10_reports_it_detaches()
    {
        _sandbox.Manager.New(TestDefinitions.Minimal("con"));
        _sandbox.Manager.Start("con");
        var output = new MemoryStream();
        var ctrlBracket = new ConsoleKeyInfo('\0', ConsoleKey.D5, false, false, true);
        using var input = new ScriptedKeys(output, ("ready", Type("info\r")), ("memory: 256 MiB", new[] { ctrlBracket }));

        using var session = ConsoleSession.Open(_sandbox.Manager, "con");
        Assert.Equal("Connected to the console of VM 'con'. Type Ctrl-] to detach.", session.ConnectedMessage);
        var run = Task.Run(() => session.Run(output, input));
        var finished = await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(20)));
        Assert.True(finished == run, "the session did not end: Ctrl-] did not detach");

        var end = await run;
        Assert.Equal(ConsoleSessionEnd.Detached, end);
        Assert.Equal("Detached from VM 'con'; it keeps running.", session.EndMessage(end));
        lock (output)
            Assert.Contains("memory: 256 MiB", Encoding.UTF8.GetString(output.ToArray()));
        Assert.Equal(VmState.Running, _sandbox.Manager.Get("con").State);
    }

    [Fact]
    public void The_session_ends_when_the_vm_stops()
    {
        _sandbox.Manager.New(TestDefinitions.Minimal("con2"));
        _sandbox.Manager.Start("con2");
        var output = new MemoryStream();
        using var input = new ScriptedKeys(output, ("ready", Type("poweroff\r")));
        using var session = ConsoleSession.Open(_sandbox.Manager, "con2");
        var end = session.Run(output, input);
        Assert.Equal(ConsoleSessionEnd.VmEnded, end);
        Assert.Equal("The console of VM 'con2' closed (the VM stopped).", session.EndMessage(end));
    }

    [Fact]
    public void A_vm_that_is_off_has_no_console()
    {
        _sandbox.Manager.New(TestDefinitions.Minimal("off"));
        var error = Assert.Throws<VmStateException>(() => ConsoleSession.Open(_sandbox.Manager, "off"));
        Assert.Equal(VmState.Off, error.State);
        Assert.Contains("VM 'off' is Off", error.Message);
        Assert.Throws<VmNotFoundException>(() => ConsoleSession.Open(_sandbox.Manager, "nope"));
    }

    [Fact]
    public void Pump_copies_both_ways_and_sends_what_precedes_the_detach_byte()
    {
        using var console = new DuplexStream(Encoding.ASCII.GetBytes("login: "));
        var output = new MemoryStream();
        var inputs = new Queue<byte[]?>(new[] { Encoding.ASCII.GetBytes("root\r"), Array.Empty<byte>(), new byte[] { (byte)'x', ConsoleKeys.DetachByte, (byte)'y' } });
        var end = ConsoleSession.Pump(console, output, _ =>
        {
            Thread.Sleep(20);
            return inputs.Count > 0 ? inputs.Dequeue() : null;
        });
        Assert.Equal(ConsoleSessionEnd.Detached, end);
        Assert.Equal("root\rx", Encoding.ASCII.GetString(console.Written.ToArray()));
        Assert.Equal("login: ", Encoding.ASCII.GetString(output.ToArray()));
    }

    [Fact]
    public void Pump_ends_when_the_input_ends()
    {
        using var console = new DuplexStream(Array.Empty<byte>());
        Assert.Equal(ConsoleSessionEnd.InputEnded, ConsoleSession.Pump(console, new MemoryStream(), _ => null));
    }

    [Fact]
    public void Piped_input_is_passed_through_until_the_detach_byte()
    {
        using var piped = new StreamConsoleInput(new MemoryStream(new byte[] { (byte)'a', ConsoleKeys.DetachByte, (byte)'b' }));
        using var console = new DuplexStream(Array.Empty<byte>());
        Assert.Equal(ConsoleSessionEnd.Detached, ConsoleSession.Pump(console, new MemoryStream(), piped.Read));
        Assert.Equal("a", Encoding.ASCII.GetString(console.Written.ToArray()));

        using var empty = new StreamConsoleInput(new MemoryStream());
        using var console2 = new DuplexStream(Array.Empty<byte>());
        Assert.Equal(ConsoleSessionEnd.InputEnded, ConsoleSession.Pump(console2, new MemoryStream(), empty.Read));
    }

    /// <summary>A console stream: reads return <c>data</c>, then block until disposed.</summary>
    private sealed class DuplexStream(byte[] data) : Stream
    {
        private readonly ManualResetEventSlim _disposed = new();
        private int _offset;

        public MemoryStream Written { get; } = new();
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_offset < data.Length)
            {
                var n = Math.Min(count, data.Length - _offset);
                Array.Copy(data, _offset, buffer, offset, n);
                _offset += n;
                return n;
            }
            _disposed.Wait();
            return 0;
        }

        public override void Write(byte[] buffer, int offset, int count) => Written.Write(buffer, offset, count);
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            _disposed.Set();
            base.Dispose(disposing);
        }
    }
}
