using KvmPS.Devices;

namespace KvmPS.Vmm;

/// <summary>
/// Fans the guest console out to the configured sink and to attached control-socket clients, and keeps the
/// last 64 KiB so a client that attaches late sees recent output.
/// </summary>
public sealed class ConsoleHub
{
    public const int HistoryBytes = 64 * 1024;
    private readonly byte[] _history = new byte[HistoryBytes];
    private long _written;
    private readonly object _lock = new();
    private readonly List<Action<byte[]>> _subscribers = new();
    private readonly ByteSink _primary;

    public ConsoleHub(ByteSink primary) => _primary = primary;

    public long BytesWritten { get { lock (_lock) return _written; } }

    public void Write(ReadOnlySpan<byte> data)
    {
        _primary(data);
        Action<byte[]>[] subscribers;
        lock (_lock)
        {
            foreach (byte b in data) _history[_written++ % HistoryBytes] = b;
            if (_subscribers.Count == 0) return;
            subscribers = _subscribers.ToArray();
        }
        byte[] copy = data.ToArray();
        foreach (var s in subscribers) s(copy);
    }

    public byte[] History()
    {
        lock (_lock)
        {
            int n = (int)Math.Min(_written, HistoryBytes);
            var result = new byte[n];
            for (int i = 0; i < n; i++) result[i] = _history[(_written - n + i) % HistoryBytes];
            return result;
        }
    }

    public IDisposable Subscribe(Action<byte[]> onOutput, bool replay)
    {
        lock (_lock)
        {
            if (replay) onOutput(History());
            _subscribers.Add(onOutput);
        }
        return new Subscription(this, onOutput);
    }

    private sealed class Subscription(ConsoleHub hub, Action<byte[]> s) : IDisposable
    {
        public void Dispose() { lock (hub._lock) hub._subscribers.Remove(s); }
    }
}
