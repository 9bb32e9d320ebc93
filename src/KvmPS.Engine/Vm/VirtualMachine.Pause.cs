namespace KvmPS.Vm;

/// <summary>Pause and resume: the vCPUs parked at their next exit, then the devices' own activity.</summary>
public sealed partial class VirtualMachine
{
    /// <summary>Stops every vCPU at its next exit and waits until all are parked.</summary>
    public bool Pause(TimeSpan timeout)
    {
        lock (_stateLock)
        {
            if (State == VmState.Paused) return true;
            if (State != VmState.Running) throw new InvalidOperationException($"The VM cannot be paused from state {State}.");
            _resumed.Reset();
            _pauseRequested = true;
        }
        foreach (var v in _vcpus) v.Kick();
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            // Reset before counting: a park after the count sets it again, so the wait below returns at once.
            _parkedChanged.Reset();
            if (Volatile.Read(ref _parked) >= _vcpus.Count(v => v.State != VcpuRunState.Exited)) break;
            if (DateTime.UtcNow > deadline || _exit.Task.IsCompleted)
            {
                // Not every vCPU stopped: undo the request so the VM keeps running as its state says.
                lock (_stateLock)
                {
                    _pauseRequested = false;
                    _resumed.Set();
                }
                return false;
            }
            foreach (var v in _vcpus) if (v.State == VcpuRunState.Running) v.Kick();
            // Woken by each park (a pause is guest downtime: no polling period in it); the timeout re-kicks a vCPU
            // that entered KVM_RUN after its kick.
            _parkedChanged.Wait(1);
        }
        // The vCPUs are parked; now every device activity (I/O thread, timers) stops too.
        lock (_stateLock)
        {
            if (State != VmState.Running) return State == VmState.Paused;
            if (!_partsPaused) { DeviceParts.PauseAll(); _partsPaused = true; }
            SetState(VmState.Paused);
        }
        return true;
    }

    public void Resume()
    {
        lock (_stateLock)
        {
            if (State == VmState.Running) return;
            if (State != VmState.Paused) throw new InvalidOperationException($"The VM cannot be resumed from state {State}.");
            if (_partsPaused) { DeviceParts.ResumeAll(); _partsPaused = false; }
            _pauseRequested = false;
            _resumed.Set();
            SetState(VmState.Running);
        }
    }

    /// <summary>Runs <paramref name="wait"/> (an ejected vCPU's park) counted as parked, so a pause does not wait for it.</summary>
    internal void ParkedWhile(Action wait)
    {
        Interlocked.Increment(ref _parked);
        _parkedChanged.Set();
        try { wait(); }
        finally { Interlocked.Decrement(ref _parked); }
    }

    internal void ParkWhilePaused()
    {
        Interlocked.Increment(ref _parked);
        _parkedChanged.Set();
        try { _resumed.Wait(); }
        finally { Interlocked.Decrement(ref _parked); }
    }
}
