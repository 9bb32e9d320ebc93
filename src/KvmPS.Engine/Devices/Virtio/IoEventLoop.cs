using KvmPS.Interop;
using KvmPS.State;
using KvmPS.Threading;

namespace KvmPS.Devices.Virtio;

/// <summary>
/// One I/O thread for all devices of a VM: an epoll loop over eventfds (ioeventfd queue notifications).
/// Each registered eventfd has a callback that runs on this thread after the counter is consumed.
/// A callback that throws is logged and the loop goes on.
/// </summary>
public sealed class IoEventLoop : IPausable, IDisposable
{
    private const ulong WakeToken = 0;
    private readonly EpollHandle _epoll;
    private readonly EventFdHandle _wake;
    private readonly Dictionary<ulong, (EventFdHandle Fd, Action Callback)> _handlers = new();
    private readonly object _lock = new();
    private readonly Action<string> _log;
    private readonly Thread _thread;
    private ulong _nextToken = 1;
    private volatile bool _stopping;
    private readonly object _pauseLock = new();
    private bool _paused, _inCallback;

    public IoEventLoop(Action<string> log, string name = "kvmps-io")
    {
        _log = log;
        _epoll = EpollHandle.Create();
        _wake = EventFdHandle.Create();
        _epoll.Add(_wake, WakeToken);
        _thread = EngineThreads.Start(ThreadRole.DeviceIo, name, Run);
    }

    /// <summary>Calls <paramref name="callback"/> on the I/O thread whenever <paramref name="eventFd"/> is signalled.</summary>
    public IDisposable Register(EventFdHandle eventFd, Action callback)
    {
        ulong token;
        lock (_lock)
        {
            token = _nextToken++;
            _handlers[token] = (eventFd, callback);
        }
        _epoll.Add(eventFd, token);
        return new Registration(this, token);
    }

    private void Unregister(ulong token)
    {
        EventFdHandle? fd = null;
        lock (_lock)
        {
            if (_handlers.Remove(token, out var h)) fd = h.Fd;
        }
        if (fd is { IsClosed: false }) _epoll.Remove(fd);
    }

    private sealed class Registration(IoEventLoop loop, ulong token) : IDisposable
    {
        private int _disposed;
        public void Dispose() { if (Interlocked.Exchange(ref _disposed, 1) == 0) loop.Unregister(token); }
    }

    private void Run()
    {
        Span<ulong> tokens = stackalloc ulong[32];
        while (!_stopping)
        {
            int n;
            try { n = _epoll.Wait(tokens, -1); }
            catch (Exception e) { _log($"I/O thread: {e.Message}"); return; }
            for (int i = 0; i < n && !_stopping; i++)
            {
                if (tokens[i] == WakeToken) { _wake.Consume(); continue; }
                if (!EnterCallback()) return;
                try
                {
                    (EventFdHandle Fd, Action Callback) h;
                    lock (_lock) if (!_handlers.TryGetValue(tokens[i], out h)) continue;
                    if (h.Fd.IsClosed) continue;
                    h.Fd.Consume();
                    h.Callback();
                }
                catch (Exception e)
                {
                    _log($"I/O thread: device callback failed: {e.GetType().Name}: {e.Message}");
                }
                finally { LeaveCallback(); }
            }
        }
    }

    /// <summary>Waits while paused (events already taken from epoll are kept and dispatched after resume); false when stopping.</summary>
    private bool EnterCallback()
    {
        lock (_pauseLock)
        {
            while (_paused && !_stopping) Monitor.Wait(_pauseLock);
            if (_stopping) return false;
            _inCallback = true;
            return true;
        }
    }

    private void LeaveCallback()
    {
        lock (_pauseLock)
        {
            _inCallback = false;
            Monitor.PulseAll(_pauseLock);
        }
    }

    /// <summary>True while a device callback runs on the I/O thread (tests).</summary>
    public bool InCallback { get { lock (_pauseLock) return _inCallback; } }

    /// <summary>
    /// Stops dispatching and returns once the callback in progress (a block request being served, say) has
    /// finished. Notifications arriving meanwhile stay counted in their eventfds and are served after
    /// <see cref="Resume"/>. Called on the I/O thread itself it only stops further dispatching.
    /// </summary>
    public void Pause()
    {
        lock (_pauseLock)
        {
            _paused = true;
            if (Thread.CurrentThread == _thread) return;
            while (_inCallback) Monitor.Wait(_pauseLock);
        }
    }

    public void Resume()
    {
        lock (_pauseLock)
        {
            _paused = false;
            Monitor.PulseAll(_pauseLock);
        }
    }

    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        lock (_pauseLock) Monitor.PulseAll(_pauseLock);
        _wake.Signal();
        if (Thread.CurrentThread != _thread) _thread.Join(TimeSpan.FromSeconds(5));
        lock (_lock) _handlers.Clear();
        _epoll.Dispose();
        _wake.Dispose();
    }
}
