using System.Diagnostics;

namespace KvmPS.Devices;

/// <summary>
/// A rate-limited log sink for device messages a guest can trigger (bad rings, refused features, BAR conflicts…).
/// A token bucket: a burst of <see cref="Burst"/> lines, then one line per <see cref="Interval"/>; what is dropped
/// is counted and reported as one "N messages suppressed" line in front of the next line that gets through (so a
/// sustained flood shows as about one line plus one count per interval), or by <see cref="Flush"/>. The sink (by
/// default a synchronous write to stderr) is therefore called at most about twice a second in steady state,
/// whatever the guest does. Thread-safe; the sink is only called from the writing thread, never under the lock.
/// </summary>
public sealed class DeviceLog
{
    public const int DefaultBurst = 20;
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(1);

    private readonly Action<string> _sink;
    private readonly string? _name;
    private readonly object _lock = new();
    private readonly long _ticksPerToken;
    private readonly Func<long> _clock;
    private double _tokens;
    private long _lastRefill;
    private long _suppressed, _totalSuppressed;

    public int Burst { get; }
    public TimeSpan Interval { get; }
    /// <summary>Messages dropped so far (all time).</summary>
    public long Suppressed { get { lock (_lock) return _totalSuppressed; } }

    /// <param name="sink">Where lines go.</param>
    /// <param name="name">Named in the "suppressed" line (e.g. the device).</param>
    /// <param name="burst">Lines let through back to back.</param>
    /// <param name="interval">One more line is allowed per interval after the burst.</param>
    /// <param name="clock">Stopwatch-tick clock (tests).</param>
    public DeviceLog(Action<string> sink, string? name = null, int burst = DefaultBurst, TimeSpan? interval = null, Func<long>? clock = null)
    {
        ArgumentNullException.ThrowIfNull(sink);
        if (burst < 1) throw new ArgumentOutOfRangeException(nameof(burst));
        _sink = sink;
        _name = name;
        Burst = burst;
        Interval = interval ?? DefaultInterval;
        if (Interval <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(interval));
        _ticksPerToken = Math.Max(1, (long)(Interval.TotalSeconds * Stopwatch.Frequency));
        _clock = clock ?? Stopwatch.GetTimestamp;
        _tokens = burst;
        _lastRefill = _clock();
    }

    /// <summary>Wraps <paramref name="sink"/> in a limiter (a sink that already is one is returned as it is).</summary>
    public static Action<string> Limit(Action<string>? sink, string? name = null)
    {
        if (sink is null) return static _ => { };
        if (sink.Target is DeviceLog) return sink;
        return new DeviceLog(sink, name).Write;
    }

    public void Write(string message)
    {
        string? summary = null;
        bool emit;
        lock (_lock)
        {
            Refill();
            if (_tokens >= 1)
            {
                _tokens -= 1;
                emit = true;
                summary = TakeSummaryLocked();
            }
            else
            {
                emit = false;
                _suppressed++;
                _totalSuppressed++;
            }
        }
        if (summary is not null) Emit(summary);
        if (emit) Emit(message);
    }

    /// <summary>Reports the messages dropped since the last report, if any.</summary>
    public void Flush()
    {
        string? summary;
        lock (_lock) summary = TakeSummaryLocked();
        if (summary is not null) Emit(summary);
    }

    private string? TakeSummaryLocked()
    {
        if (_suppressed == 0) return null;
        string s = $"{(_name is null ? "" : _name + ": ")}{_suppressed} log message{(_suppressed == 1 ? "" : "s")} suppressed (rate limit)";
        _suppressed = 0;
        return s;
    }

    private void Refill()
    {
        long now = _clock();
        long elapsed = now - _lastRefill;
        if (elapsed <= 0) return;
        _tokens = Math.Min(Burst, _tokens + (double)elapsed / _ticksPerToken);
        _lastRefill = now;
    }

    private void Emit(string line)
    {
        try { _sink(line); }
        catch (Exception) { } // a failing log must not take a device thread down
    }
}
