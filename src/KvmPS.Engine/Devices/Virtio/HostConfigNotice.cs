namespace KvmPS.Devices.Virtio;

/// <summary>
/// A configuration change the host makes from outside the device's I/O thread (the balloon's target, virtio-mem's
/// requested size), told to the driver from that thread: <see cref="Raise"/> marks it and kicks a queue through the
/// transport (deferred while the transport is paused), and the device's ProcessQueue calls <see cref="SendIfPending"/>,
/// which sends the configuration-change interrupt. A driver that starts reads the configuration itself, so activation
/// drops a pending notice, except one restored from a snapshot (the restored driver may still be owed it).
/// </summary>
public sealed class HostConfigNotice
{
    private readonly object _lock = new();
    private volatile VirtioPciTransport? _transport;
    private bool _pending, _driverOk, _restored; // guarded by _lock

    /// <summary>The driver has set DRIVER_OK since the last reset.</summary>
    public bool DriverOk { get { lock (_lock) return _driverOk; } }
    /// <summary>A change the driver has not been told about yet.</summary>
    public bool Pending { get { lock (_lock) return _pending; } }

    /// <summary>Marks a change and kicks <paramref name="queue"/> so the I/O thread sends the notice.</summary>
    public void Raise(int queue)
    {
        lock (_lock) _pending = true;
        Kick(queue);
    }

    /// <summary>Runs the device's queue handler on its I/O thread (no-op before activation or after <see cref="Detach"/>).</summary>
    public void Kick(int queue) => _transport?.HandleNotify(queue);

    /// <summary>The device's Activate.</summary>
    public void Activate(IVirtioContext context)
    {
        if (context is VirtioPciTransport t) _transport = t;
        lock (_lock)
        {
            _driverOk = true;
            if (!_restored) _pending = false;
            _restored = false;
        }
    }

    /// <summary>The device's Reset.</summary>
    public void Reset()
    {
        lock (_lock) _driverOk = false;
    }

    /// <summary>From the device's ProcessQueue: sends the configuration-change interrupt if a change is pending.</summary>
    public void SendIfPending(IVirtioContext context)
    {
        bool pending;
        lock (_lock) { pending = _pending; _pending = false; }
        if (pending) context.ConfigChanged();
    }

    /// <summary>From the device's RestoreState.</summary>
    public void Restore(bool driverOk, bool pending)
    {
        lock (_lock) (_driverOk, _pending, _restored) = (driverOk, pending, true);
    }

    /// <summary>From the device's Dispose: later kicks find no transport.</summary>
    public void Detach() => _transport = null;
}
