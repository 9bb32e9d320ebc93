using KvmPS.Threading;
using KvmPS.Devices;

namespace KvmPS.Vmm;

/// <summary>
/// The guest console's output, fanned out to the configured sink (stdout or a file) and to attached control-socket
/// clients, with the last 64 KiB kept so a client that attaches late sees recent output.
/// The guest never waits for any of them: <see cref="Write"/> only copies into bounded buffers (which grow, up to their
/// bound, as output comes: at most a 1 MiB allocation under the hub's lock, once). A writer thread
/// drains them; a sink that cannot keep up loses its oldest pending bytes (counted in <see cref="BytesDropped"/>),
/// and a client that stops reading is disconnected.
/// </summary>
public sealed class ConsoleHub : IDisposable
{
    public const int HistoryBytes = 64 * 1024;
    /// <summary>Output waiting for the primary sink, and for each client, at most.</summary>
    public const int PendingLimitBytes = 1024 * 1024;

    private readonly ByteRing _history = new(HistoryBytes); // the last output, for a console client that attaches
    private long _written, _dropped;
    private readonly object _lock = new();
    private readonly List<Subscriber> _subscribers = new();
    private readonly ByteRing _pending = new(PendingLimitBytes);
    private readonly ByteSink _primary;
    private volatile EngineThread? _writer;
    private bool _disposed, _writing, _writerStarted;

    /// <param name="startWriter">
    /// False leaves the writer thread to <see cref="StartWriter"/>: kvmps-vmm starts it once the vCPUs run (they go
    /// first), as output is only buffered until then.
    /// </param>
    public ConsoleHub(ByteSink primary, bool startWriter = true)
    {
        _primary = primary;
        if (startWriter) StartWriter();
    }

    /// <summary>Starts the thread that drains output to the primary sink (once; later calls do nothing).</summary>
    public void StartWriter()
    {
        lock (_lock)
        {
            if (_writerStarted || _disposed) return;
            _writerStarted = true;
        }
        _writer = EngineThreads.Launch(ThreadRole.Console, "console-out", WriterLoop, 128 * 1024);
    }

    public long BytesWritten { get { lock (_lock) return _written; } }
    /// <summary>Output the primary sink lost because it did not keep up.</summary>
    public long BytesDropped { get { lock (_lock) return _dropped; } }

    /// <summary>Called on vCPU threads (under the UART's lock): copies and returns at once.</summary>
    public void Write(ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            _history.Write(data);
            _written += data.Length;
            _dropped += _pending.Write(data);
            foreach (var s in _subscribers) s.Enqueue(data);
            Monitor.PulseAll(_lock);
        }
    }

    private void WriterLoop()
    {
        var chunk = new byte[16 * 1024]; // fresh pages, faulted in before the guest's first byte goes out: few
        while (true)
        {
            int n;
            lock (_lock)
            {
                while (_pending.Count == 0 && !_disposed) Monitor.Wait(_lock);
                if (_pending.Count == 0) return;
                n = _pending.Read(chunk);
                _writing = true;
            }
            try { _primary(chunk.AsSpan(0, n)); }
            catch (Exception) { /* a broken sink must not end the VM: its output is lost */ }
            lock (_lock) { _writing = false; Monitor.PulseAll(_lock); }
        }
    }

    /// <summary>How long a pause (a snapshot, a migration's handover) waits for <see cref="Flush"/>: a stuck sink costs the pause that much, no more.</summary>
    public static readonly TimeSpan PausedFlushTimeout = TimeSpan.FromSeconds(1);

    /// <summary>Waits until pending output has reached the primary sink (before the process exits).</summary>
    public bool Flush(TimeSpan timeout)
    {
        StartWriter();
        var deadline = DateTime.UtcNow + timeout;
        lock (_lock)
        {
            while (_pending.Count > 0 || _writing)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) return false;
                Monitor.Wait(_lock, left);
            }
        }
        return true;
    }

    public byte[] History()
    {
        lock (_lock)
        {
            var result = new byte[_history.Count];
            _history.Peek(result);
            return result;
        }
    }

    /// <summary>
    /// Streams output to <paramref name="stream"/> on a thread of its own until the subscription is disposed, the
    /// stream fails, or the client falls more than <see cref="PendingLimitBytes"/> behind (then it is disconnected).
    /// </summary>
    public IDisposable Subscribe(Stream stream, bool replay)
    {
        lock (_lock)
        {
            var s = new Subscriber(this, stream);
            if (replay) s.Enqueue(History());
            _subscribers.Add(s);
            s.Start();
            return s;
        }
    }

    private void Remove(Subscriber s)
    {
        lock (_lock) _subscribers.Remove(s);
    }

    public void Dispose()
    {
        lock (_lock) { _disposed = true; Monitor.PulseAll(_lock); }
        _writer?.Join(TimeSpan.FromSeconds(2));
        Subscriber[] all;
        lock (_lock) all = _subscribers.ToArray();
        foreach (var s in all) s.Dispose();
    }

    private sealed class Subscriber(ConsoleHub hub, Stream stream) : IDisposable
    {
        private readonly ByteRing _queue = new(PendingLimitBytes);
        private readonly object _gate = new();
        private bool _closed;

        public void Start() => EngineThreads.Start(ThreadRole.Console, "console-client", Loop, 128 * 1024);

        /// <summary>Under the hub's lock: never blocks. A client this far behind is not reading: drop it.</summary>
        public void Enqueue(ReadOnlySpan<byte> data)
        {
            lock (_gate)
            {
                if (_closed) return;
                if (_queue.Write(data) > 0) { Close(); return; }
                Monitor.Pulse(_gate);
            }
        }

        private void Loop()
        {
            var chunk = new byte[16 * 1024];
            try
            {
                while (true)
                {
                    int n;
                    lock (_gate)
                    {
                        while (_queue.Count == 0 && !_closed) Monitor.Wait(_gate);
                        if (_closed) return;
                        n = _queue.Read(chunk);
                    }
                    stream.Write(chunk, 0, n);
                }
            }
            catch (Exception) { /* the client went away */ }
            finally { Dispose(); }
        }

        private void Close()
        {
            _closed = true;
            Monitor.PulseAll(_gate);
            try { stream.Dispose(); } catch (Exception) { } // unblocks a writer stuck in send() and the client's reader
        }

        public void Dispose()
        {
            lock (_gate) if (!_closed) Close();
            hub.Remove(this);
        }
    }

    /// <summary>
    /// A byte FIFO of at most <paramref name="capacity"/> bytes; writing past it drops the oldest bytes and returns how
    /// many. Its buffer grows as it fills: a full-size one up front was a megabyte of fresh pages faulted in at every
    /// start (the managed heap zeroes a large array) for output that is drained as soon as the writer runs.
    /// </summary>
    private sealed class ByteRing(int capacity)
    {
        private const int InitialBytes = 4096;
        private byte[] _buffer = new byte[Math.Min(capacity, InitialBytes)];
        private int _start;
        public int Count { get; private set; }

        public long Write(ReadOnlySpan<byte> data)
        {
            if (Count + data.Length > _buffer.Length && _buffer.Length < capacity) Grow(Math.Min(capacity, Count + data.Length));
            long dropped = 0;
            if (data.Length >= _buffer.Length) { dropped = Count + data.Length - _buffer.Length; data = data[^_buffer.Length..]; Count = 0; _start = 0; }
            int overflow = Count + data.Length - _buffer.Length;
            if (overflow > 0) { _start = (_start + overflow) % _buffer.Length; Count -= overflow; dropped += overflow; }
            int end = (_start + Count) % _buffer.Length;
            int first = Math.Min(data.Length, _buffer.Length - end);
            data[..first].CopyTo(_buffer.AsSpan(end));
            data[first..].CopyTo(_buffer);
            Count += data.Length;
            return dropped;
        }

        /// <summary>A buffer of at least <paramref name="needed"/> bytes (doubling, at most the capacity), the bytes held moved to its start.</summary>
        private void Grow(int needed)
        {
            var grown = new byte[Math.Min(capacity, Math.Max(needed, _buffer.Length * 2))];
            int held = Count;
            Read(grown);
            (_buffer, _start, Count) = (grown, 0, held);
        }

        public int Read(Span<byte> destination)
        {
            int n = Peek(destination);
            _start = (_start + n) % _buffer.Length;
            Count -= n;
            return n;
        }

        /// <summary>Copies the oldest bytes held into <paramref name="destination"/> and keeps them.</summary>
        public int Peek(Span<byte> destination)
        {
            int n = Math.Min(destination.Length, Count);
            int first = Math.Min(n, _buffer.Length - _start);
            _buffer.AsSpan(_start, first).CopyTo(destination);
            _buffer.AsSpan(0, n - first).CopyTo(destination[first..]);
            return n;
        }
    }
}
