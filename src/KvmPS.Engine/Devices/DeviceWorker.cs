using System.Diagnostics;
using KvmPS.State;
using KvmPS.Threading;

namespace KvmPS.Devices;

/// <summary>
/// A device's own thread for work no vCPU exit drives (host-side kicks, periodic polls), in place of a thread pool
/// item or a <see cref="Timer"/>: it can be paused and joined. <c>work</c> runs when <see cref="Signal"/> was called
/// or, with a period, when the period has elapsed; never while paused, and never twice at once.
/// </summary>
public sealed class DeviceWorker : IPausable, IDisposable
{
    private readonly object _lock = new();
    private readonly Action _work;
    private readonly TimeSpan? _period;
    private readonly Action<string> _log;
    private readonly Thread _thread;
    private bool _signalled, _paused, _running, _stopping;
    private long _nextDue; // Stopwatch timestamp of the next periodic run (monotonic: wall-clock changes do not matter)

    public DeviceWorker(string name, Action work, TimeSpan? period = null, Action<string>? log = null)
    {
        if (period is { } p && p <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(period), "a worker period must be positive.");
        _work = work;
        _period = period;
        _log = log ?? (_ => { });
        _nextDue = period is { } q ? Stopwatch.GetTimestamp() + ToTicks(q) : long.MaxValue;
        _thread = EngineThreads.Start(ThreadRole.DeviceWorker, name, Run);
    }

    /// <summary>Times <c>work</c> has run (tests and diagnostics).</summary>
    public long Runs { get; private set; }
    public bool IsPaused { get { lock (_lock) return _paused; } }

    /// <summary>Asks for one run of the work soon (coalesced with other requests; deferred while paused).</summary>
    public void Signal()
    {
        lock (_lock)
        {
            _signalled = true;
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Stops running the work and returns once a run in progress has finished (at once on the worker's own thread).</summary>
    public void Pause()
    {
        lock (_lock)
        {
            _paused = true;
            if (Thread.CurrentThread == _thread) return;
            while (_running) Monitor.Wait(_lock);
        }
    }

    public void Resume()
    {
        lock (_lock)
        {
            _paused = false;
            Monitor.PulseAll(_lock);
        }
    }

    private void Run()
    {
        while (true)
        {
            lock (_lock)
            {
                while (true)
                {
                    if (_stopping) return;
                    if (!_paused)
                    {
                        long now = Stopwatch.GetTimestamp();
                        if (_signalled) break;
                        if (now >= _nextDue) break;
                        double waitMs = Math.Min((double)(_nextDue - now) * 1000 / Stopwatch.Frequency, 3_600_000);
                        Monitor.Wait(_lock, TimeSpan.FromMilliseconds(Math.Max(1, waitMs)));
                    }
                    else Monitor.Wait(_lock);
                }
                _signalled = false;
                if (_period is { } p && Stopwatch.GetTimestamp() >= _nextDue) _nextDue = Stopwatch.GetTimestamp() + ToTicks(p);
                _running = true;
            }
            try { _work(); }
            catch (Exception e) { _log($"{_thread.Name}: {e.GetType().Name}: {e.Message}"); }
            finally
            {
                lock (_lock)
                {
                    _running = false;
                    Runs++;
                    Monitor.PulseAll(_lock);
                }
            }
        }
    }

    private static long ToTicks(TimeSpan t) => (long)(t.TotalSeconds * Stopwatch.Frequency);

    /// <summary>Stops the thread and waits for it (not when called from the work itself).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_stopping) return;
            _stopping = true;
            Monitor.PulseAll(_lock);
        }
        if (Thread.CurrentThread != _thread) _thread.Join(TimeSpan.FromSeconds(5));
    }
}
