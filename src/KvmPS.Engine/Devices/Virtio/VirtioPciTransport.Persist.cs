using KvmPS.Devices.Pci;
using KvmPS.State;

namespace KvmPS.Devices.Virtio;

// Pause and persistence of the transport: kept apart from the register logic.
public sealed partial class VirtioPciTransport
{
    private bool _paused;                 // under SyncRoot: notifications are deferred, nothing touches the rings
    private bool _activateOnResume;       // restored with DRIVER_OK: the device is activated when the VM resumes
    private readonly HashSet<int> _deferred = new();

    /// <summary>True between <see cref="Pause"/> (or a restore) and <see cref="Resume"/>.</summary>
    public bool IsPaused { get { lock (SyncRoot) return _paused; } }

    private void DeferNotify(int queue)
    {
        if ((uint)queue < (uint)_queues.Length) _deferred.Add(queue);
    }

    /// <summary>
    /// Stops all queue processing: waits for the notification being processed (an in-flight block request
    /// completes), then defers every later notification — from the I/O thread, a tap, a device worker or the
    /// control socket — until <see cref="Resume"/>; then pauses the device's own threads.
    /// </summary>
    public void Pause()
    {
        lock (SyncRoot) _paused = true;
        (_device as IPausable)?.Pause();
    }

    /// <summary>Processes the notifications that arrived while paused, then lets the device's threads run again.</summary>
    public void Resume()
    {
        lock (SyncRoot)
        {
            if (!_paused) return;
            _paused = false;
            if (!_disposed && _activateOnResume)
            {
                _activateOnResume = false;
                _activated = true;
                try { _device.Activate(this); }
                catch (Exception e) { Fail($"activation after restore: {e.GetType().Name}: {e.Message}"); }
                // Notifications the saved VM had deferred (and host requests since the restore) are not in the
                // snapshot: every enabled queue is processed once, as if notified — harmless when nothing is there.
                for (int i = 0; i < _queues.Length; i++) if (_queues[i].Queue is not null) _deferred.Add(i);
            }
            foreach (int q in _deferred.Order().ToArray()) ProcessQueueLocked(q);
            _deferred.Clear();
        }
        (_device as IPausable)?.Resume();
    }

    // ---- records: pci/00:SS.0 (config space + MSI-X), …/virtio, …/queueN, …/device ----

    public override IEnumerable<IPersistent> PersistentParts()
    {
        yield return this;
        yield return new TransportPart(this);
        for (int i = 0; i < _queues.Length; i++) yield return new QueuePart(this, i);
        if (_device is IPersistent device) yield return new NamedPart($"{StateName}/device", device);
    }

    public override IEnumerable<IPausable> PausableParts() { yield return this; }

    protected override void SaveFunctionState(StateWriter writer) => _msix.CaptureState().Write(writer);

    protected override void RestoreFunctionState(StateReader reader) => _msix.RestoreState(MsiXState.Read(reader), reader);

    public VirtioPciTransportState CaptureTransportState()
    {
        lock (SyncRoot)
            return new VirtioPciTransportState(OfferedFeatures, (ushort)_queues.Length, _deviceFeatureSelect, _driverFeatureSelect, _driverFeatures,
                _msixConfig, _queueSelect, _status, _configGeneration, _isr, _activated || _activateOnResume);
    }

    /// <summary>
    /// Puts the transport's registers back. The transport is left paused (nothing runs, the device is activated on
    /// <see cref="Resume"/>), so the machine can restore every record before anything touches guest memory.
    /// </summary>
    public void RestoreTransportState(StateReader reader, ushort version)
    {
        var s = VirtioPciTransportState.Read(reader, version);
        if (s.OfferedFeatures != OfferedFeatures)
            throw reader.Fail($"the saved device offered features 0x{s.OfferedFeatures:x}, {Name} offers 0x{OfferedFeatures:x}");
        if (s.QueueCount != _queues.Length) throw reader.Fail($"{s.QueueCount} queues saved, {Name} has {_queues.Length}");
        if ((s.DriverFeatures & ~OfferedFeatures) != 0 && (s.Status & VirtioStatus.FeaturesOk) != 0)
            throw reader.Fail($"negotiated features 0x{s.DriverFeatures:x} were never offered (0x{OfferedFeatures:x})");
        if (s.MsixConfigVector != NoVector && s.MsixConfigVector >= _msix.VectorCount)
            throw reader.Fail($"configuration vector {s.MsixConfigVector} is beyond the {_msix.VectorCount} MSI-X vectors");
        if (s.Activated && (s.Status & VirtioStatus.DriverOk) == 0) throw reader.Fail("the device is activated without DRIVER_OK");
        lock (SyncRoot)
        {
            _paused = true;
            _deviceFeatureSelect = s.DeviceFeatureSelect;
            _driverFeatureSelect = s.DriverFeatureSelect;
            _driverFeatures = s.DriverFeatures;
            _msixConfig = s.MsixConfigVector;
            _queueSelect = s.QueueSelect;
            _status = s.Status;
            _configGeneration = s.ConfigGeneration;
            _isr = s.Isr;
            _activated = false;
            _activateOnResume = s.Activated;
        }
    }

    public VirtioQueueConfigState CaptureQueueState(int index)
    {
        lock (SyncRoot)
        {
            var q = _queues[index];
            return new VirtioQueueConfigState(q.Size, q.MsixVector, q.Enabled, q.Desc, q.Driver, q.Device, q.Queue?.CaptureState());
        }
    }

    public void RestoreQueueState(int index, StateReader reader, ushort version)
    {
        var s = VirtioQueueConfigState.Read(reader, version);
        ushort max = _device.MaxQueueSize(index);
        if (s.Size > max) throw reader.Fail($"queue size {s.Size} exceeds {Name}'s maximum {max}");
        if (s.MsixVector != NoVector && s.MsixVector >= _msix.VectorCount)
            throw reader.Fail($"MSI-X vector {s.MsixVector} is beyond the {_msix.VectorCount} vectors");
        if (s.Enabled != (s.Queue is not null)) throw reader.Fail(s.Enabled ? "the queue is enabled without ring state" : "ring state for a disabled queue");
        VirtQueue? vq = null;
        if (s.Queue is { } qs)
        {
            if (qs.Size != s.Size || qs.DescTable != s.Desc || qs.AvailRing != s.Driver || qs.UsedRing != s.Device)
                throw reader.Fail("the ring state does not match the queue configuration");
            vq = VirtQueue.TryRestore(_memory, qs, out string? error) ?? throw reader.Fail($"queue {index}: {error}");
        }
        lock (SyncRoot)
        {
            _paused = true;
            _queues[index] = new QueueState { Size = s.Size, MsixVector = s.MsixVector, Enabled = s.Enabled, Desc = s.Desc, Driver = s.Driver, Device = s.Device, Queue = vq };
        }
    }

    private sealed class TransportPart(VirtioPciTransport t) : IPersistent
    {
        public string StateName => $"{t.StateName}/virtio";
        public ushort StateVersion => VirtioPciTransportState.Version;
        public void SaveState(StateWriter writer) => t.CaptureTransportState().Write(writer);
        public void RestoreState(StateReader reader, ushort version) => t.RestoreTransportState(reader, version);
    }

    private sealed class QueuePart(VirtioPciTransport t, int index) : IPersistent
    {
        public string StateName => $"{t.StateName}/queue{index}";
        public ushort StateVersion => VirtioQueueConfigState.Version;
        public void SaveState(StateWriter writer) => t.CaptureQueueState(index).Write(writer);
        public void RestoreState(StateReader reader, ushort version) => t.RestoreQueueState(index, reader, version);
    }
}
