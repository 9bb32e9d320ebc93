using System.Diagnostics;
using System.Text;
using KvmPS.Contract;
using KvmPS.State;
using KvmPS.Threading;
using KvmPS.Vm;

namespace KvmPS.Migration;

/// <summary>
/// The source side of a live migration (docs/migration.md), on its own engine thread: connect, send the machine's
/// identity and wait for the destination to build it; pre-copy (round 0: every page that may hold data, then the pages
/// dirtied meanwhile, from KVM's dirty log and the VMM's own record of device writes) until the rest fits the downtime
/// budget at the measured rate; pause, send the rest and every state record, and wait for the destination to say it
/// runs. Then the machine ends as <see cref="VmExitKind.Migrated"/>. Any failure before that (the link, the
/// destination, cancel, a timeout, a guest that dirties faster than the link without auto-converge) resumes the VM
/// here as it was.
/// </summary>
public sealed class MigrationSender
{
    /// <summary>Pre-copy rounds after round 0 at most; a migration that has not converged by then gives up.</summary>
    public const int MaxRounds = 30;
    /// <summary>
    /// Rounds in a row that do not shrink the dirty set by a tenth: without auto-converge the migration gives up after
    /// this many (the guest dirties faster than the link sends); with it, each such round raises the throttle a step,
    /// and at the top step this many more end it.
    /// </summary>
    public const int StalledRounds = 5;
    private const int ThrottleStepPercent = 20, MaxThrottlePercent = 99, ThrottleCycleMs = 500;
    public const int ConnectTimeoutMs = 10_000, IoTimeoutMs = 30_000, HandoverTimeoutMs = 60_000;
    private static readonly TimeSpan PauseTimeout = TimeSpan.FromSeconds(5);

    private readonly VirtualMachine _machine;
    private readonly MigrateRequest _request;
    private readonly MigrationEndpoint _endpoint;
    private readonly string _configJson;
    private readonly TextWriter _log;
    private readonly object _lock = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private MigrationStream? _stream;
    private volatile bool _cancel;
    private bool _pausedByUs;       // the migration thread paused the VM (throttle or stop-copy) and must resume it on failure
    private bool _wasRunning;
    private Stopwatch? _downtime;
    private DateTime? _stoppedUtc; // the last pause by us: the vCPUs out of KVM_RUN (host clock, for a same-clock downtime)
    private double _pauseMs;       // how long that pause took to get them out
    private byte[]? _pageBuffer;   // SendPages' copy of the pages it frames

    // Status, under _lock.
    private string _phase = MigrationPhases.Setup;
    private int _round, _throttlePercent;
    private long _pagesSent, _dirtyPages, _dirtyRate, _transferRate, _expectedDowntimeMs, _totalMs = -1, _downtimeMs = -1;
    private string? _error;
    private bool _memoryShared;
    private StorageCopySender? _storage; // include_storage: the disks go in the stream too
    private Devices.Config.HandedOverResources _handOver; // what changes hands at the pause (DeviceHandover.Plan)
    private HandedOverDevices _handedOver;
    private readonly List<(int Slot, Devices.Virtio.Block.VirtioBlock Disk)> _releasedDisks = []; // closed for a tcp hand-over

    public MigrationSender(VirtualMachine machine, MigrateRequest request, MigrationEndpoint endpoint, string configJson, TextWriter log)
    {
        machine.ThrowIfNotMigratable(); // before any memory moves: a passthrough device cannot follow
        _machine = machine;
        _request = request;
        _endpoint = endpoint;
        _configJson = configJson;
        _log = log;
    }

    /// <summary>
    /// The connection to a <c>unix:</c> destination the request came with (docs/vmm.md "Passing open files"), used
    /// instead of connecting to its path; the sender owns it. Null: the sender connects.
    /// </summary>
    public System.Net.Sockets.Socket? Connection { get; init; }

    /// <summary>
    /// Called while the VM is paused before the destination may run it: the console's output so far reaches its sink
    /// first (within a time limit), so a serial log both processes append to reads in the guest's order.
    /// </summary>
    public Action? FlushConsole { get; init; }

    /// <summary>True until the migration has completed, failed or been cancelled.</summary>
    public bool Active { get { lock (_lock) return _phase is not (MigrationPhases.Completed or MigrationPhases.Failed or MigrationPhases.Cancelled); } }

    public void Start() => EngineThreads.Start(ThreadRole.Migration, "migrate", Run);

    /// <summary>
    /// Stops a migration under way; the VM resumes here. False once everything is sent (hand-over): the destination may
    /// already run the VM, and resuming it here too would run it twice.
    /// </summary>
    public bool Cancel()
    {
        lock (_lock)
        {
            if (_phase is MigrationPhases.Completed or MigrationPhases.Handover) return false;
            if (!Active) return true;
            _cancel = true;
        }
        _stream?.Abort();
        return true;
    }

    public MigrateStatusReply Status()
    {
        lock (_lock)
        {
            return new MigrateStatusReply
            {
                Phase = _phase,
                Uri = _request.Uri,
                Round = _round,
                BytesSent = _stream?.BytesWritten ?? 0,
                SentPages = _pagesSent,
                DirtyPages = _dirtyPages,
                DirtyRateBytesPerS = _dirtyRate,
                TransferRateBytesPerS = _transferRate,
                ExpectedDowntimeMs = _expectedDowntimeMs,
                DowntimeLimitMs = _request.DowntimeMs,
                ThrottlePercent = _throttlePercent,
                TotalMs = _totalMs >= 0 ? _totalMs : _clock.ElapsedMilliseconds,
                DowntimeMs = _downtimeMs >= 0 ? _downtimeMs : _downtime is { } d ? d.ElapsedMilliseconds : null,
                MemoryShared = _memoryShared,
                DiskBytesTotal = _storage?.TotalBytes ?? 0,
                DiskBytesSent = _storage?.SentBytes ?? 0,
                DiskDirtyBytes = _storage?.DirtyBytes ?? 0,
                Error = _error,
            };
        }
    }

    private void SetPhase(string phase) { lock (_lock) _phase = phase; }

    private void Run()
    {
        try
        {
            Migrate();
        }
        catch (Exception e)
        {
            // Whatever broke, the VM goes on here as it was; the destination sees the connection close (or our error).
            string reason = _cancel ? "cancelled by migrate.cancel" : e is MigrationException ? e.Message : $"{e.GetType().Name}: {e.Message}";
            if (!_cancel && e is MigrationException && reason.StartsWith("the connection failed while sending", StringComparison.Ordinal)
                && _stream?.TryReadPeerError(500) is { } refused)
                reason = $"the destination refused: {refused}";
            try { if (!_cancel) _stream?.WriteText(MigrationCommand.Error, reason); } catch (MigrationException) { }
            // Disks closed for the hand-over (tcp) are opened again before the guest may send a request.
            if (_releasedDisks.Count > 0 && DiskHandover.Reacquire(_machine, _releasedDisks) is { } lost)
            {
                reason += $"; {lost}";
                _log.WriteLine($"kvmps-vmm: error: {lost}");
            }
            ResumeIfWePaused();
            // Logged before the phase says so: a client that sees Failed finds the reason in the log too.
            _log.WriteLine($"kvmps-vmm: migration to {_request.Uri} {(_cancel ? "cancelled" : "failed")}: {reason}; the VM runs on here");
            lock (_lock)
            {
                _phase = _cancel ? MigrationPhases.Cancelled : MigrationPhases.Failed;
                _error = reason;
                _totalMs = _clock.ElapsedMilliseconds;
                if (_downtime is { } d) _downtimeMs = d.ElapsedMilliseconds;
            }
        }
        finally
        {
            _storage?.StopTracking();
            _stream?.Dispose();
        }
    }

    private void Migrate()
    {
        var memory = _machine.Memory;
        var socket = Connection ?? _endpoint.Connect(ConnectTimeoutMs);
        try { if (_request.Token is { } token) MigrationToken.Send(socket, token); }
        catch { socket.Dispose(); throw; }
        _stream = MigrationStream.Over(socket, IoTimeoutMs);
        CheckCancel();
        if (_request.IncludeStorage) _storage = new StorageCopySender(_machine);
        // The disks change hands at the pause: over a Unix socket (this host) their open files go over, locks and all;
        // over tcp (shared storage) they are closed here and the destination opens them then. Taps and vsock listeners
        // go over a Unix socket only (DeviceHandover.Plan).
        (uint version, _handOver) = DeviceHandover.Plan(_machine, _storage is not null, _stream.CanPassDescriptors);
        _stream.WriteHeader(version);
        byte[] identity = Encoding.UTF8.GetBytes(string.Join('\n', MachineIdentity.For(_machine.Config, _machine.RemovedConfiguredSlots)));
        byte[] length = BitConverter.GetBytes((uint)identity.Length); // little-endian on x86-64, the only target
        _stream.WriteFrame(MigrationCommand.Config, [.. length, .. identity], Encoding.UTF8.GetBytes(_configJson));
        if (_storage is not null) _stream.WriteFrame(MigrationCommand.Disks, _storage.Describe());
        _stream.Expect(MigrationCommand.Ready, "destination");
        CheckCancel();
        _wasRunning = _machine.State == VmState.Running;
        // With the disks to copy there is pre-copy anyway: memory is copied too (memfds are for the same host).
        if (_storage is null && _stream.CanPassDescriptors && memory.SharedMemoryFiles is { Count: <= Interop.UnixFdPassing.MaxFds } files)
        {
            // Local live upgrade: the destination maps the very same memory; nothing to copy, no rounds.
            SetPhase(MigrationPhases.StopCopy);
            using var sharedNoGc = NoGcWindow.Enter();
            _downtime = Stopwatch.StartNew();
            PauseVm();
            var regions = new byte[4 + memory.Regions.Count * 16];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(regions, (uint)memory.Regions.Count);
            for (int i = 0; i < memory.Regions.Count; i++)
            {
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(regions.AsSpan(4 + i * 16), memory.Regions[i].GuestAddress);
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(regions.AsSpan(12 + i * 16), memory.Regions[i].SizeBytes);
            }
            _stream.WriteFrameWithDescriptors(MigrationCommand.MemoryFds, regions, files);
            lock (_lock) _memoryShared = true;
            SendStateAndHandOver();
            return;
        }

        // "Dirty since" starts at a paused instant (a device marks a page before writing it, so a harvest must not race
        // a device): a pause of a few milliseconds.
        PauseVm();
        try
        {
            if (memory.DirtyTracking) KeepForDiffSnapshots(memory.HarvestDirtyPages());
            else memory.StartDirtyTracking();
        }
        finally { ResumeIfWePaused(); }

        SetPhase(MigrationPhases.PreCopy);
        if (_storage is not null) CopyDisks();
        // Round 0: every page that may hold data; the destination's RAM is fresh, so zero pages need not be sent.
        var roundClock = Stopwatch.StartNew();
        long sentBefore = _stream.BytesWritten;
        SendPages(memory.PagesThatMayHoldData(), sendZeroPages: false);
        var deviceWritten = new GuestPageBitmap(memory.PageCount);
        GuestPageBitmap dirty;
        long previousDirty = long.MaxValue;
        int stalled = 0;
        while (true)
        {
            double roundSeconds = Math.Max(roundClock.Elapsed.TotalSeconds, 1e-3);
            long roundBytes = _stream.BytesWritten - sentBefore;
            dirty = memory.HarvestDirtyPages(deviceWritten);
            KeepForDiffSnapshots(dirty);
            long dirtyCount = (long)dirty.Count;
            long diskDirty = _storage?.DirtyBytes ?? 0;
            long transferRate = roundBytes > 256 * 1024 ? (long)(roundBytes / roundSeconds) : Math.Max(_transferRate, (long)(roundBytes / roundSeconds));
            long dirtyRate = (long)(dirtyCount * MigrationStream.PageSize / roundSeconds);
            long leftBytes = dirtyCount * (MigrationStream.PageSize + 16) + diskDirty;
            long expectedMs = transferRate > 0 ? leftBytes * 1000 / transferRate : long.MaxValue;
            lock (_lock)
            {
                _dirtyPages = dirtyCount;
                _dirtyRate = dirtyRate;
                _transferRate = transferRate;
                _expectedDowntimeMs = expectedMs;
            }
            // Converged: what is left goes out within the budget (a handful of pages always does). While the rounds
            // still halve what is left (round 0 always counts), one more round is cheap: it lasts at most the budget
            // and leaves less to send paused. A set that stopped shrinking that fast is handed over as it is.
            bool handful = dirtyCount <= 64 && diskDirty == 0;
            bool halving = leftBytes * 2 <= previousDirty && _round < MaxRounds - 1;
            if (handful || (expectedMs <= _request.DowntimeMs && !halving)) break;
            stalled = leftBytes < previousDirty * 9 / 10 ? 0 : stalled + 1;
            previousDirty = leftBytes;
            bool throttledToTheTop = _throttlePercent >= MaxThrottlePercent;
            if (_round >= MaxRounds || (stalled >= StalledRounds && (!_request.AutoConverge || throttledToTheTop)))
                throw new MigrationException(
                    $"the migration does not converge: after {_round + 1} rounds the guest still dirties {dirtyRate >> 10} KiB/s against {transferRate >> 10} KiB/s sent " +
                    $"({dirtyCount} pages left, {expectedMs} ms expected downtime, limit {_request.DowntimeMs} ms)" +
                    (_request.AutoConverge ? $" even with the vCPUs throttled to {100 - MaxThrottlePercent}%" : "; retry with auto_converge, a larger downtime_ms or more bandwidth"));
            if (_request.AutoConverge && stalled > 0 && !throttledToTheTop)
            {
                // Each round that did not shrink raises the throttle; the count starts again at the new step.
                lock (_lock) _throttlePercent = Math.Min(MaxThrottlePercent, _throttlePercent + ThrottleStepPercent);
                stalled = 0;
            }
            lock (_lock) _round++;
            roundClock.Restart();
            sentBefore = _stream.BytesWritten;
            SendPages(dirty, sendZeroPages: true);
            _storage?.SendDirty(_stream, BeforeRead, LimitBandwidth);
        }

        // Stop and copy: the VM stays paused until the destination runs it (or we give up and resume it). The
        // bandwidth cap applies to pre-copy only: once paused, every millisecond is downtime (QEMU does the same).
        SetPhase(MigrationPhases.StopCopy);
        _bandwidthLifted = true;
        using var noGc = NoGcWindow.Enter();
        _downtime = Stopwatch.StartNew();
        PauseVm();
        var last = memory.HarvestDirtyPages();
        KeepForDiffSnapshots(last);
        last.UnionWith(dirty);
        last.UnionWith(deviceWritten); // pages devices wrote while we ran: they may have changed after we read them
        lock (_lock) _throttlePercent = 0;
        SendPages(last, sendZeroPages: true);
        // Paused: no request reaches a disk now, so these are the last blocks the guest wrote.
        _storage?.SendDirty(_stream, CheckCancel, () => { });
        SendStateAndHandOver();
    }

    private void BeforeRead()
    {
        CheckCancel();
        Throttle();
    }

    /// <summary>
    /// include_storage: every block of every disk (zero blocks skipped), then rounds of the blocks the guest wrote
    /// meanwhile until they shrink no more (the memory rounds after this send the rest with the pages, and count them in
    /// the expected downtime). The dirty maps are on from before the first block is read.
    /// </summary>
    private void CopyDisks()
    {
        var storage = _storage!;
        storage.StartTracking();
        storage.SendAll(_stream!, BeforeRead, LimitBandwidth);
        long previous = long.MaxValue;
        for (int round = 0; round < MaxRounds; round++)
        {
            long dirty = storage.DirtyBytes;
            // Small enough to go with the memory rounds, or not shrinking: the memory loop decides from here.
            if (dirty <= 16 * DiskDirtyMapBlock || dirty >= previous * 9 / 10) break;
            previous = dirty;
            storage.SendDirty(_stream!, BeforeRead, LimitBandwidth);
        }
    }

    private const long DiskDirtyMapBlock = Devices.Virtio.Block.DiskDirtyMap.BlockSize;

    /// <summary>Paused: the state records, End, and the wait for the destination's Running; then this VM ends as migrated.</summary>
    private void SendStateAndHandOver()
    {
        var stream = _stream!;
        // Paused: no request reaches a disk, and every completed write is in the files (write-through): the open files
        // go over as they are, their locks with them. The source keeps its own descriptors until it exits.
        // Taps and listeners likewise: the paused VM reads no tap and accepts nobody; frames and clients wait in them.
        if (_handOver != Devices.Config.HandedOverResources.None)
        {
            var handed = DeviceHandover.Send(stream, _machine, _handOver, _releasedDisks);
            lock (_lock) _handedOver = handed;
        }
        byte[] state = SnapshotStateFile.Encode(_machine.SaveState());
        stream.WriteFrame(MigrationCommand.State, state);
        lock (_lock)
        {
            // From End on the destination may run the VM: no cancel can take it back after this point.
            if (_cancel) throw new MigrationException("cancelled by migrate.cancel");
            _phase = MigrationPhases.Handover;
        }
        FlushConsole?.Invoke();
        // End's flag byte 1: the user had paused the VM, so the destination keeps it paused (older receivers ignore it).
        stream.WriteFrame(MigrationCommand.End, _wasRunning ? [] : [1]);
        stream.ReceiveTimeoutMs = HandoverTimeoutMs;
        stream.Expect(MigrationCommand.Running, "destination");
        // The destination runs the VM on the taps and listeners it shares with us: closing ours must undo nothing now.
        DeviceHandover.SetOwnership(_machine, _handOver, owns: false);
        // tcp: the destination holds and writes the released images now; the files kept to lock them again go.
        DiskHandover.CloseReleased(_releasedDisks);

        long downtimeMs = _downtime!.ElapsedMilliseconds;
        lock (_lock)
        {
            _phase = MigrationPhases.Completed;
            _totalMs = _clock.ElapsedMilliseconds;
            _downtimeMs = downtimeMs;
        }
        var status = Status();
        _log.WriteLine($"kvmps-vmm: migrated to {_request.Uri}: total {status.TotalMs} ms, downtime {downtimeMs} ms, {status.BytesSent} bytes, " +
            (_memoryShared ? "memory passed as memfds (not copied)" : $"{status.SentPages} pages in {status.Round + 1} rounds") +
            (_storage is { } disks ? $", {disks.SentBytes} bytes of {disks.Count} disks" : "") +
            _handedOver.Describe(_stream!.CanPassDescriptors, "released to the destination") +
            (Connection is null ? "" : "; over the connection passed with the request"));
        // The same instant QEMU's STOP event stamps (after the vCPUs stopped), on the host's wall clock: with the
        // destination's "started at" line it gives the downtime QEMU's events give (docs/benchmarks.md figure 10).
        if (_stoppedUtc is { } stopped)
            _log.WriteLine($"kvmps-vmm: migration: the vCPUs stopped at unix time {UnixSeconds(stopped)} s (the pause took {_pauseMs:0.0} ms)");
        _machine.Finish(new VmExit(VmExitKind.Migrated, $"migrated to {_request.Uri}"));
    }

    /// <summary>Seconds since the epoch with microseconds (QMP's event timestamps have the same precision).</summary>
    internal static string UnixSeconds(DateTime utc)
    {
        long us = (utc - DateTime.UnixEpoch).Ticks / 10;
        return $"{us / 1_000_000}.{us % 1_000_000:D6}";
    }

    /// <summary>A failed migration must not cost a later diff snapshot the pages harvested here.</summary>
    private void KeepForDiffSnapshots(GuestPageBitmap pages) => _machine.SnapshotBaseline?.PendingPages.UnionWith(pages);

    /// <summary>Sends <paramref name="pages"/>: data frames, and (after round 0) runs of pages that are all zero now as ZeroPages frames.</summary>
    private void SendPages(GuestPageBitmap pages, bool sendZeroPages)
    {
        var memory = _machine.Memory;
        // One buffer for the whole migration: a large-object allocation per round would bring a full collection,
        // once as late as the stop-and-copy.
        var buffer = _pageBuffer ??= new byte[MigrationStream.MaxPagesPerFrame * MigrationStream.PageSize];
        var zeroRuns = new List<(ulong First, uint Count)>();
        Span<byte> runHead = stackalloc byte[12];
        foreach (var (first, count) in pages.Runs())
            foreach (var (chunkFirst, chunkCount, gpa) in GuestPages.Chunks(memory, first, count))
            {
                CheckCancel();
                Throttle();
                // Copy out first: the guest may write meanwhile (the page is then dirty again and goes in a later round).
                var data = buffer.AsSpan(0, chunkCount * MigrationStream.PageSize);
                memory.GetReadOnlySpan(gpa, data.Length).CopyTo(data);
                int at = 0;
                while (at < chunkCount)
                {
                    // Split the chunk into runs of zero and non-zero pages.
                    bool zero = IsZero(data, at);
                    int end = at + 1;
                    while (end < chunkCount && IsZero(data, end) == zero) end++;
                    if (zero)
                    {
                        if (sendZeroPages) AddZeroRun(zeroRuns, chunkFirst + (ulong)at, (uint)(end - at));
                    }
                    else
                    {
                        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(runHead, chunkFirst + (ulong)at);
                        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(runHead[8..], (uint)(end - at));
                        _stream!.WriteFrame(MigrationCommand.Pages, runHead, data[(at * MigrationStream.PageSize)..(end * MigrationStream.PageSize)]);
                        LimitBandwidth();
                    }
                    lock (_lock) _pagesSent += end - at;
                    at = end;
                }
                if (zeroRuns.Count >= 4096) FlushZeroRuns(zeroRuns);
            }
        FlushZeroRuns(zeroRuns);
    }

    private static bool IsZero(ReadOnlySpan<byte> data, int page) =>
        !data.Slice(page * MigrationStream.PageSize, MigrationStream.PageSize).ContainsAnyExcept((byte)0);

    private static void AddZeroRun(List<(ulong First, uint Count)> runs, ulong first, uint count)
    {
        if (runs.Count > 0 && runs[^1].First + runs[^1].Count == first) runs[^1] = (runs[^1].First, runs[^1].Count + count);
        else runs.Add((first, count));
    }

    private void FlushZeroRuns(List<(ulong First, uint Count)> runs)
    {
        if (runs.Count == 0) return;
        var payload = new byte[runs.Count * 12];
        for (int i = 0; i < runs.Count; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(i * 12), runs[i].First);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(i * 12 + 8), runs[i].Count);
        }
        _stream!.WriteFrame(MigrationCommand.ZeroPages, payload);
        runs.Clear();
    }

    private readonly Stopwatch _bandwidthClock = Stopwatch.StartNew();
    private long _bandwidthBase;
    private bool _bandwidthLifted;

    /// <summary>With <c>bandwidth_bytes_per_s</c>: sleeps until the bytes sent fit the rate.</summary>
    private void LimitBandwidth()
    {
        if (_request.BandwidthBytesPerS is not long limit || _bandwidthLifted) return;
        long sent = _stream!.BytesWritten - _bandwidthBase;
        double due = (double)sent / limit;
        // Short sleeps, so the throttle's cycle goes on while the link is the limit.
        for (double ahead = due - _bandwidthClock.Elapsed.TotalSeconds; ahead > 0.002; ahead = due - _bandwidthClock.Elapsed.TotalSeconds)
        {
            int untilToggleMs = Throttle();
            Thread.Sleep(TimeSpan.FromSeconds(Math.Min(ahead, Math.Max(1, untilToggleMs) / 1000.0)));
            CheckCancel();
        }
        if (_bandwidthClock.Elapsed.TotalSeconds > 2) { _bandwidthBase = _stream.BytesWritten; _bandwidthClock.Restart(); }
    }

    private readonly Stopwatch _throttleClock = Stopwatch.StartNew();

    /// <summary>
    /// Auto-converge: in each 100 ms cycle the vCPUs are held paused for throttle_percent of it, while sending goes on;
    /// the guest then dirties less than the link sends.
    /// </summary>
    /// <returns>Milliseconds until the throttle next wants to pause or resume (a long time without throttling).</returns>
    private int Throttle()
    {
        int percent;
        lock (_lock) percent = _throttlePercent;
        if (percent == 0 || !_wasRunning || _machine.State is not (VmState.Running or VmState.Paused)) return 1000;
        long inCycle = _throttleClock.ElapsedMilliseconds;
        long runMs = ThrottleCycleMs - ThrottleCycleMs * percent / 100;
        if (!_pausedByUs)
        {
            if (inCycle >= ThrottleCycleMs) { _throttleClock.Restart(); inCycle = 0; }
            if (inCycle < runMs) return (int)(runMs - inCycle);
            PauseVm();
            return (int)(ThrottleCycleMs - inCycle);
        }
        if (inCycle < ThrottleCycleMs) return (int)(ThrottleCycleMs - inCycle);
        ResumeIfWePaused();
        _throttleClock.Restart();
        return (int)runMs;
    }

    private void PauseVm()
    {
        if (_machine.State == VmState.Paused || _pausedByUs) return;
        if (_machine.State != VmState.Running) throw new MigrationException($"the VM is {_machine.State}: there is nothing left to migrate");
        long asked = Stopwatch.GetTimestamp();
        if (!_machine.Pause(PauseTimeout)) throw new MigrationException($"the vCPUs did not stop within {PauseTimeout.TotalSeconds:0} s");
        _stoppedUtc = DateTime.UtcNow;
        _pauseMs = Stopwatch.GetElapsedTime(asked).TotalMilliseconds;
        _pausedByUs = true;
    }

    private void ResumeIfWePaused()
    {
        if (!_pausedByUs) return;
        _pausedByUs = false;
        if (_machine.State == VmState.Paused) _machine.Resume();
    }

    private void CheckCancel()
    {
        if (_cancel) throw new MigrationException("cancelled by migrate.cancel");
        if (_machine.Exited.IsCompleted) throw new MigrationException($"the VM stopped ({_machine.State}) during the migration");
    }
}
