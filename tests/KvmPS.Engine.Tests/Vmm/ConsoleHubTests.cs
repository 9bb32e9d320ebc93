using KvmPS.Vmm;

namespace KvmPS.Engine.Tests.Vmm;

/// <summary>Guest console output never waits for a sink or a client (the guest's vCPU thread writes it).</summary>
public class ConsoleHubTests
{
    /// <summary>A stream whose writes block until it is disposed: a client that never reads.</summary>
    private sealed class StuckStream : Stream
    {
        private readonly ManualResetEventSlim _disposed = new();
        public bool Disposed => _disposed.IsSet;
        public override void Write(byte[] buffer, int offset, int count) { _disposed.Wait(); throw new IOException("closed"); }
        protected override void Dispose(bool disposing) { _disposed.Set(); base.Dispose(disposing); }
        public override bool CanRead => false; public override bool CanSeek => false; public override bool CanWrite => true;
        public override long Length => 0; public override long Position { get => 0; set { } }
        public override void Flush() { } public override int Read(byte[] b, int o, int c) => 0;
        public override long Seek(long o, SeekOrigin s) => 0; public override void SetLength(long v) { }
    }

    [Fact]
    public void AClientThatNeverReadsIsDroppedAndNeverBlocksTheGuest()
    {
        var delivered = new MemoryStream();
        using var hub = new ConsoleHub(data => { lock (delivered) delivered.Write(data); });
        var stuck = new StuckStream();
        hub.Subscribe(stuck, replay: false);
        var line = new byte[1000];
        var watch = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 3000; i++) hub.Write(line); // 3 MB: more than a client may fall behind
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"writes took {watch.Elapsed}");
        Assert.True(SpinWait.SpinUntil(() => stuck.Disposed, TimeSpan.FromSeconds(5)), "the stuck client was not disconnected");
        Assert.True(hub.Flush(TimeSpan.FromSeconds(10)));
        // Every byte either reached the primary sink or was counted as dropped (a 3 MB burst in milliseconds is far
        // beyond any UART; a real guest's output stays well inside the 1 MiB bound).
        lock (delivered) Assert.Equal(3_000_000, delivered.Length + hub.BytesDropped);
    }

    [Fact]
    public void ASinkThatBlocksLosesItsOldestOutputInsteadOfBlockingTheGuest()
    {
        var release = new ManualResetEventSlim();
        using var hub = new ConsoleHub(_ => release.Wait());
        var watch = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 3000; i++) hub.Write(new byte[1000]);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"writes took {watch.Elapsed}");
        Assert.True(hub.BytesDropped > 0);
        Assert.Equal(3_000_000, hub.BytesWritten);
        release.Set();
    }

    /// <summary>
    /// The buffers start small and grow as output comes: what the guest wrote before the writer ran reaches the sink
    /// whole and in order, and the history holds exactly the last <see cref="ConsoleHub.HistoryBytes"/> bytes.
    /// </summary>
    [Fact]
    public void OutputBeforeTheWriterRunsArrivesWholeAndTheHistoryKeepsItsLastBytes()
    {
        var delivered = new MemoryStream();
        using var hub = new ConsoleHub(data => { lock (delivered) delivered.Write(data); }, startWriter: false);
        var written = new byte[3 * ConsoleHub.HistoryBytes + 123]; // past the history, within the pending limit
        for (int i = 0; i < written.Length; i++) written[i] = (byte)(i * 7 + i / 251);
        for (int at = 0; at < written.Length; at += 1000) hub.Write(written.AsSpan(at, Math.Min(1000, written.Length - at)));
        Assert.Equal(written.AsSpan(^ConsoleHub.HistoryBytes..).ToArray(), hub.History());
        hub.StartWriter();
        Assert.True(hub.Flush(TimeSpan.FromSeconds(10)));
        lock (delivered) Assert.Equal(written, delivered.ToArray());
        Assert.Equal(0, hub.BytesDropped);
    }

    [Fact]
    public void ALateClientGetsTheRecentHistory()
    {
        using var hub = new ConsoleHub(_ => { });
        hub.Write("KvmPS built-in guest v1\r\nready\r\n"u8);
        var received = new MemoryStream();
        var pipe = new System.IO.Pipes.AnonymousPipeServerStream(System.IO.Pipes.PipeDirection.Out);
        using var reader = new System.IO.Pipes.AnonymousPipeClientStream(System.IO.Pipes.PipeDirection.In, pipe.ClientSafePipeHandle);
        using (hub.Subscribe(pipe, replay: true))
        {
            var buffer = new byte[64];
            int n = reader.Read(buffer);
            Assert.Contains("ready", System.Text.Encoding.ASCII.GetString(buffer, 0, n) + ReadMore(reader));
        }

        static string ReadMore(Stream s)
        {
            var b = new byte[64];
            var t = s.ReadAsync(b).AsTask();
            return t.Wait(500) ? System.Text.Encoding.ASCII.GetString(b, 0, t.Result) : "";
        }
    }
}
