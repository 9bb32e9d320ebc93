using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.Interop;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Devices.Virtio.Balloon;

/// <summary>
/// virtio traditional memory balloon (type 5), virtio 1.x "Memory Balloon Device".
/// <list type="bullet">
/// <item>Configuration: <c>le32 num_pages</c> (the balloon size the host wants, in 4 KiB pages; written by the host
/// through <c>balloon.set</c>) and <c>le32 actual</c> (the driver's balloon size; only this field is guest-writable).</item>
/// <item>Queues: inflateq (0) and deflateq (1) carry arrays of le32 page frame numbers (4 KiB units); statsq (2) carries
/// <c>{le16 tag; le64 val}</c> records. The stats queue is always offered (VIRTIO_BALLOON_F_STATS_VQ), so the queue
/// numbering never depends on negotiation.</item>
/// <item>Inflate: every PFN is checked to be a whole page of guest RAM (others are counted and logged, never
/// touched); sorted, adjacent PFNs are merged into ranges and given back to the host with
/// <see cref="GuestMemory.Discard"/> (MADV_DONTNEED), so the VMM's RSS falls. Deflate only counts: a deflated page
/// faults back in (as zeroes) when the guest touches it, which is why VIRTIO_BALLOON_F_MUST_TELL_HOST is not
/// offered — the device never needs to hear about a page before the guest reuses it.</item>
/// <item>Stats: the device keeps the driver's stats buffer and returns it (used, length 0) when it wants a fresh
/// one: every <c>stats_interval_s</c> seconds when that is &gt; 0 (on the device's own worker thread, paused with the VM).</item>
/// </list>
/// Host-side events (a new target, the stats timer) run the device's queue code through the transport's
/// notification path (<see cref="VirtioPciTransport.HandleNotify"/>: under the transport's lock, only while the
/// driver is running), so everything that touches the rings, the configuration generation or interrupts happens
/// under that lock. The device's own lock guards what the control thread reads; it is never held while calling
/// into the transport.
/// </summary>
public sealed class VirtioBalloon : IVirtioDevice, IDeviceControl, IPersistent, IPausable
{
    public const ushort QueueSize = 256;
    public const int InflateQueue = 0, DeflateQueue = 1, StatsQueue = 2;
    public const ulong FeatureMustTellHost = 1UL << 0, FeatureStatsVq = 1UL << 1, FeatureDeflateOnOom = 1UL << 2;
    public const ulong PageSize = 4096;
    /// <summary>PFN bytes read from one inflate/deflate chain at most (1 MiB = 262144 pages = 1 GiB of guest RAM).</summary>
    public const ulong MaxPfnBytesPerChain = 1 << 20;
    private const int MaxStatsBytes = 64 * 10;
    private const int MaxLoggedInvalid = 8;

    /// <summary>Statistic tags of the spec (VIRTIO_BALLOON_S_*), as reported by balloon.get.</summary>
    public static readonly IReadOnlyList<string> StatNames =
    [
        "swap_in", "swap_out", "major_faults", "minor_faults", "free_memory", "total_memory", "available_memory",
        "disk_caches", "hugetlb_allocations", "hugetlb_failures", "oom_kills", "alloc_stalls", "async_scans",
        "direct_scans", "async_reclaims", "direct_reclaims",
    ];

    public static string StatName(ushort tag) => tag < StatNames.Count ? StatNames[tag] : $"tag_{tag}";

    private readonly GuestMemory _memory;
    private readonly Action<string> _log;
    private readonly bool _canDiscard;
    private readonly DescriptorChain _chain = new();
    private readonly object _lock = new();
    private readonly DeviceWorker? _statsWorker; // asks for fresh statistics every StatsIntervalSeconds
    private readonly byte[] _pfnBuffer = new byte[16384];
    private readonly List<ulong> _pfns = new(4096);
    private readonly HostConfigNotice _notice = new(); // host-side kicks (see the class comment)

    // Guarded by _lock (the control thread and the timer read or write them).
    private uint _targetPages;
    private uint _actualPages;
    private bool _statsDue;
    private Dictionary<string, ulong> _stats = new();
    private long _statsTimestamp; // Stopwatch ticks of the last stats buffer, 0 = none yet
    private long _inflatedPages, _deflatedPages, _invalidPfns, _discardedBytes;
    private int _loggedInvalid;

    // Only touched under the transport's lock.
    private ushort? _heldStatsHead;

    public VirtioBalloon(GuestMemory memory, bool deflateOnOom = false, int statsIntervalSeconds = 0, Action<string>? log = null)
    {
        _memory = memory;
        _log = DeviceLog.Limit(log, "virtio-balloon"); // oversized chains etc. are guest-triggered: rate-limited
        DeflateOnOom = deflateOnOom;
        StatsIntervalSeconds = statsIntervalSeconds;
        _canDiscard = memory.Options.HugePages != HugePageMode.HugeTlbFs;
        if (!_canDiscard) _log("virtio-balloon: guest RAM is on hugetlbfs; inflated pages are not given back to the host (4 KiB discards are impossible there)");
        if (statsIntervalSeconds > 0)
            _statsWorker = new DeviceWorker("kvmps-balloon", RequestStats, TimeSpan.FromSeconds(statsIntervalSeconds), _log);
    }

    public bool DeflateOnOom { get; }
    public int StatsIntervalSeconds { get; }
    public string Name => "virtio-balloon";
    public ushort DeviceType => 5;
    public uint PciClassCode => 0x00FF00; // PCI_CLASS_OTHERS, as QEMU presents virtio-balloon
    public int QueueCount => 3;
    public ushort MaxQueueSize(int queue) => QueueSize;
    public ulong DeviceFeatures => FeatureStatsVq | (DeflateOnOom ? FeatureDeflateOnOom : 0);
    public int ConfigSize => 8;

    public uint TargetPages { get { lock (_lock) return _targetPages; } }
    public uint ActualPages { get { lock (_lock) return _actualPages; } }
    public long InflatedPages { get { lock (_lock) return _inflatedPages; } }
    public long DeflatedPages { get { lock (_lock) return _deflatedPages; } }
    public long InvalidPfns { get { lock (_lock) return _invalidPfns; } }
    public long DiscardedBytes { get { lock (_lock) return _discardedBytes; } }

    /// <summary>The last statistics the driver sent (spec tag names), and when (null: none yet).</summary>
    public (IReadOnlyDictionary<string, ulong> Stats, TimeSpan? Age) Statistics
    {
        get
        {
            lock (_lock)
                return (new Dictionary<string, ulong>(_stats), _statsTimestamp == 0 ? null : Stopwatch.GetElapsedTime(_statsTimestamp));
        }
    }

    /// <summary>Sets the balloon size the host wants (bytes, rounded down to 4 KiB pages) and tells the driver.</summary>
    public void SetTarget(ulong bytes)
    {
        if (bytes > _memory.SizeBytes)
            throw new ArgumentException($"balloon target {bytes} bytes is larger than the guest's memory ({_memory.SizeBytes} bytes).");
        lock (_lock) _targetPages = (uint)(bytes / PageSize);
        _notice.Raise(InflateQueue);
    }

    /// <summary>Returns the held stats buffer to the driver so that it sends fresh statistics.</summary>
    public void RequestStats()
    {
        lock (_lock) _statsDue = true;
        _notice.Kick(StatsQueue);
    }

    public void ReadConfig(int offset, Span<byte> data)
    {
        Span<byte> cfg = stackalloc byte[8];
        lock (_lock)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(cfg, _targetPages);
            BinaryPrimitives.WriteUInt32LittleEndian(cfg[4..], _actualPages);
        }
        data.Clear();
        if ((uint)offset < 8) cfg[offset..Math.Min(8, offset + data.Length)].CopyTo(data);
    }

    public void WriteConfig(int offset, ReadOnlySpan<byte> data)
    {
        // Only `actual` (bytes 4..7) is driver-writable; partial writes update the bytes they cover.
        Span<byte> cfg = stackalloc byte[8];
        lock (_lock)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(cfg[4..], _actualPages);
            for (int i = 0; i < data.Length; i++)
                if (offset + i is >= 4 and < 8) cfg[offset + i] = data[i];
            _actualPages = BinaryPrimitives.ReadUInt32LittleEndian(cfg[4..]);
        }
    }

    public void Activate(IVirtioContext context) => _notice.Activate(context);

    public void Reset()
    {
        _heldStatsHead = null;
        _notice.Reset();
        lock (_lock) { _actualPages = 0; _statsDue = false; }
    }

    public void ProcessQueue(IVirtioContext context, int queue)
    {
        _notice.SendIfPending(context);
        switch (queue)
        {
            case InflateQueue:
            case DeflateQueue:
                ProcessPfnQueue(context, queue);
                break;
            case StatsQueue:
                ProcessStatsQueue(context);
                break;
        }
    }

    private void ProcessPfnQueue(IVirtioContext context, int queue)
    {
        if (context.Queue(queue) is not { } q) return;
        if (q.DrainAvailable(_chain, (Device: this, Inflate: queue == InflateQueue), static (s, _) =>
            {
                s.Device.HandlePfns(s.Inflate);
                return 0u;
            }))
            context.NotifyUsed(queue);
    }

    /// <summary>Reads the chain's PFNs (le32, 4 KiB units), validates them, and on inflate discards them in merged ranges.</summary>
    private void HandlePfns(bool inflate)
    {
        ulong total = Math.Min(_chain.ReadableBytes, MaxPfnBytesPerChain) & ~3UL;
        if (_chain.ReadableBytes > MaxPfnBytesPerChain)
            _log($"virtio-balloon: a {(inflate ? "inflate" : "deflate")} buffer of {_chain.ReadableBytes} bytes; only the first {MaxPfnBytesPerChain} are used");
        long valid = 0, invalid = 0, discarded = 0;
        for (ulong at = 0; at < total; at += (ulong)_pfnBuffer.Length)
        {
            int n = _chain.ReadFrom(_memory, at, _pfnBuffer.AsSpan(0, (int)Math.Min((ulong)_pfnBuffer.Length, total - at))) & ~3;
            _pfns.Clear();
            for (int i = 0; i < n; i += 4)
            {
                uint pfn = BinaryPrimitives.ReadUInt32LittleEndian(_pfnBuffer.AsSpan(i));
                ulong gpa = (ulong)pfn * PageSize;
                if (!_memory.IsValidRange(gpa, PageSize))
                {
                    invalid++;
                    LogInvalid(pfn, inflate);
                    continue;
                }
                _pfns.Add(pfn);
            }
            valid += _pfns.Count;
            if (inflate && _canDiscard) discarded += DiscardRanges();
            if (n < _pfnBuffer.Length && at + (ulong)n < total) break; // the chain ended early
        }
        lock (_lock)
        {
            if (inflate) _inflatedPages += valid; else _deflatedPages += valid;
            _invalidPfns += invalid;
            _discardedBytes += discarded;
        }
    }

    /// <summary>Sorts <see cref="_pfns"/>, merges runs of consecutive frames, and discards each run; returns the bytes discarded.</summary>
    private long DiscardRanges()
    {
        if (_pfns.Count == 0) return 0;
        _pfns.Sort();
        long bytes = 0;
        ulong start = _pfns[0], end = start + 1; // [start, end) in frames
        for (int i = 1; i <= _pfns.Count; i++)
        {
            if (i < _pfns.Count && _pfns[i] <= end) { end = Math.Max(end, _pfns[i] + 1); continue; } // duplicates fold in
            bytes += Discard(start * PageSize, (end - start) * PageSize);
            if (i < _pfns.Count) { start = _pfns[i]; end = start + 1; }
        }
        return bytes;
    }

    private long Discard(ulong gpa, ulong length)
    {
        try
        {
            _memory.Discard(gpa, length);
            return (long)length;
        }
        catch (Exception e) when (e is GuestMemoryException or NativeCallException)
        {
            // A run that crosses a region boundary: fall back to single pages (each was checked to be RAM).
            long done = 0;
            for (ulong off = 0; off < length; off += PageSize)
            {
                try { _memory.Discard(gpa + off, PageSize); done += (long)PageSize; }
                catch (Exception e2) when (e2 is GuestMemoryException or NativeCallException)
                {
                    _log($"virtio-balloon: cannot discard 0x{gpa + off:x}: {e2.Message}");
                    break;
                }
            }
            return done;
        }
    }

    private void LogInvalid(uint pfn, bool inflate)
    {
        if (_loggedInvalid >= MaxLoggedInvalid) return;
        _loggedInvalid++;
        _log($"virtio-balloon: ignored {(inflate ? "inflate" : "deflate")} PFN 0x{pfn:x} (0x{(ulong)pfn * PageSize:x}): not guest RAM" +
             (_loggedInvalid == MaxLoggedInvalid ? " (further invalid PFNs are counted, not logged)" : ""));
    }

    private void ProcessStatsQueue(IVirtioContext context)
    {
        if (context.Queue(StatsQueue) is not { } q) return;
        bool used = false;
        while (q.Pop(_chain) == PopResult.Chain)
        {
            ReadStats();
            // The driver owns one stats buffer; if it posts another, the older one goes back unchanged.
            if (_heldStatsHead is ushort old) { q.PushUsed(old, 0); used = true; }
            _heldStatsHead = _chain.Head;
        }
        bool due;
        lock (_lock) { due = _statsDue; _statsDue = false; }
        if (due && _heldStatsHead is ushort head && !q.IsBroken)
        {
            q.PushUsed(head, 0);
            _heldStatsHead = null;
            used = true;
        }
        q.EnableNotifications();
        if (used) context.NotifyUsed(StatsQueue);
    }

    private void ReadStats()
    {
        int length = (int)Math.Min(_chain.ReadableBytes, (ulong)MaxStatsBytes);
        Span<byte> buf = stackalloc byte[MaxStatsBytes];
        int n = _chain.ReadFrom(_memory, 0, buf[..length]);
        var stats = new Dictionary<string, ulong>();
        for (int i = 0; i + 10 <= n; i += 10)
            stats[StatName(BinaryPrimitives.ReadUInt16LittleEndian(buf[i..]))] = BinaryPrimitives.ReadUInt64LittleEndian(buf[(i + 2)..]);
        lock (_lock)
        {
            _stats = stats;
            _statsTimestamp = Stopwatch.GetTimestamp();
        }
    }

    // ---- control requests ----
    public IReadOnlyList<string> ControlRequests { get; } = [BalloonSetRequest.Name, BalloonGetRequest.Name];

    public JsonElement HandleControlRequest(ControlRequest request)
    {
        switch (request)
        {
            case BalloonSetRequest set:
                if (set.TargetBytes < 0)
                    throw new ArgumentException($"balloon.set: \"target_bytes\" {set.TargetBytes} is negative (0 = empty balloon).");
                SetTarget((ulong)set.TargetBytes);
                return JsonSerializer.SerializeToElement(StateReply(), ContractJsonContext.Default.BalloonStateReply);
            case BalloonGetRequest:
                return JsonSerializer.SerializeToElement(StateReply(), ContractJsonContext.Default.BalloonStateReply);
            default:
                throw new ArgumentException($"virtio-balloon does not handle '{request.Request}'.");
        }
    }

    /// <summary>The balloon's state as <c>balloon.set</c> and <c>balloon.get</c> reply it (stats_updated_ms_ago left out before any stats).</summary>
    public BalloonStateReply StateReply()
    {
        lock (_lock)
            return new BalloonStateReply
            {
                TargetBytes = (long)((ulong)_targetPages * PageSize),
                ActualBytes = (long)((ulong)_actualPages * PageSize),
                MemoryBytes = (long)_memory.SizeBytes,
                DriverOk = _notice.DriverOk,
                DeflateOnOom = DeflateOnOom,
                StatsIntervalS = (int)StatsIntervalSeconds,
                Stats = _stats.ToDictionary(s => s.Key, s => (long)s.Value, StringComparer.Ordinal),
                StatsUpdatedMsAgo = _statsTimestamp == 0 ? null : (long)Stopwatch.GetElapsedTime(_statsTimestamp).TotalMilliseconds,
                InflatedPages = _inflatedPages,
                DeflatedPages = _deflatedPages,
                InvalidPfns = _invalidPfns,
                DiscardedBytes = _discardedBytes,
            };
    }

    // ---- pause and state ----
    /// <summary>Stops the stats worker (waiting for a request in progress); host kicks meanwhile are deferred by the paused transport.</summary>
    public void Pause() => _statsWorker?.Pause();
    public void Resume() => _statsWorker?.Resume();
    /// <summary>The stats worker (null without a stats interval), for tests.</summary>
    internal DeviceWorker? StatsWorker => _statsWorker;

    public string StateName => Name;
    public ushort StateVersion => VirtioBalloonState.Version;

    /// <summary>Called while the transport is paused, so the held stats head is stable.</summary>
    public VirtioBalloonState CaptureState()
    {
        lock (_lock)
            return new VirtioBalloonState(_targetPages, _actualPages, _notice.DriverOk, _notice.Pending, _statsDue, _heldStatsHead,
                _inflatedPages, _deflatedPages, _invalidPfns, _discardedBytes,
                _stats.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (kv.Key, kv.Value)).ToArray());
    }

    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        var s = VirtioBalloonState.Read(reader, version);
        if ((ulong)s.TargetPages * PageSize > _memory.SizeBytes)
            throw reader.Fail($"balloon target {s.TargetPages} pages is larger than the guest's memory ({_memory.SizeBytes} bytes)");
        _heldStatsHead = s.HeldStatsHead;
        lock (_lock)
        {
            (_targetPages, _actualPages, _statsDue) = (s.TargetPages, s.ActualPages, s.StatsDue);
            (_inflatedPages, _deflatedPages, _invalidPfns, _discardedBytes) = (s.InflatedPages, s.DeflatedPages, s.InvalidPfns, s.DiscardedBytes);
            _stats = s.Stats.ToDictionary(x => x.Name, x => x.Value);
            _statsTimestamp = 0;
        }
        _notice.Restore(s.DriverOk, s.ConfigDirty);
    }

    /// <summary>
    /// Stops the stats worker and waits for a request already running, so nothing reaches the transport once this
    /// returns; host-side kicks after it find no transport. The transport calls this outside its lock (a running
    /// request may be waiting for that lock).
    /// </summary>
    public void Dispose()
    {
        _notice.Detach();
        _statsWorker?.Dispose();
    }
}
