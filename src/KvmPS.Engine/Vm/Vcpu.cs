using KvmPS.Threading;
using KvmPS.Interop;
using KvmPS.State;
using static KvmPS.Interop.KvmConstants;

namespace KvmPS.Vm;

/// <summary>What a vCPU thread is doing, for status and metrics. Ejected: the guest ejected the CPU (hot-remove); the
/// thread waits outside KVM until the CPU is added again.</summary>
public enum VcpuRunState { NotStarted, Running, Paused, Exited, Ejected }

/// <summary>One vCPU: its fd, its shared kvm_run page and the thread that runs the KVM_RUN loop.</summary>
public sealed unsafe class Vcpu : IDisposable, IPersistent
{
    private readonly VirtualMachine _machine;
    private readonly KvmVcpuHandle _handle;
    private readonly kvm_run* _run;
    private readonly int _runSize;
    private EngineThread? _thread;
    private nuint _pthread;
    private readonly long[] _exitCounts = new long[64];
    private volatile VcpuRunState _state = VcpuRunState.NotStarted;
    private bool _neverRan = true; // a vCPU that never entered KVM_RUN has no exit to complete (and a restored one must not run before resume)
    private readonly object _ejectLock = new();
    private volatile bool _ejected; // under _ejectLock: the guest ejected this CPU and it has not been added again

    public int Id { get; }
    public VcpuRunState State => _state;
    internal KvmVcpuHandle Handle => _handle;

    internal Vcpu(VirtualMachine machine, KvmVcpuHandle handle, int id, int runSize)
    {
        _machine = machine;
        _handle = handle;
        Id = id;
        _runSize = runSize;
        _run = (kvm_run*)Kvm.MapRun(handle, runSize);
    }

    /// <summary>Exit counts indexed by KVM exit reason.</summary>
    public long ExitCount(uint reason) => reason < _exitCounts.Length ? Interlocked.Read(ref _exitCounts[reason]) : 0;

    internal void Start()
    {
        _thread = EngineThreads.Launch(ThreadRole.Vcpu, $"vcpu{Id}", RunLoop, onAnotherCpu: true);
    }

    internal void Kick() => VcpuKick.Kick(Volatile.Read(ref _pthread), _run);

    /// <summary>The guest ejected this CPU: the thread leaves KVM_RUN and parks outside KVM until <see cref="Reinsert"/>.</summary>
    internal void Eject()
    {
        lock (_ejectLock) _ejected = true;
        Kick();
    }

    /// <summary>Before its threads start (a restored machine): this CPU is not present, so it starts parked.</summary>
    internal void MarkEjected() { lock (_ejectLock) _ejected = true; }

    /// <summary>Added again: the thread goes back into KVM_RUN, where the CPU waits (uninitialized) for the guest's INIT/SIPI.</summary>
    internal void Reinsert()
    {
        lock (_ejectLock)
        {
            _ejected = false;
            Monitor.PulseAll(_ejectLock);
        }
    }

    /// <summary>Wakes a parked ejected thread so it sees a stop.</summary>
    internal void WakeEjected() { lock (_ejectLock) Monitor.PulseAll(_ejectLock); }

    public bool IsEjected => _ejected;

    /// <summary>
    /// Parks an ejected CPU: its KVM state becomes "uninitialized" (as KVM creates an AP), so when it is added again
    /// only INIT/SIPI starts it, and nothing the guest sends meanwhile runs code on it. Counts as parked for pause.
    /// </summary>
    private void ParkEjected()
    {
        _machine.ParkedWhile(() =>
        {
            lock (_ejectLock)
            {
                if (!_ejected) return;
                Kvm.SetMpState(_handle, KVM_MP_STATE_UNINITIALIZED);
                _state = VcpuRunState.Ejected;
                while (_ejected && !_machine.StopRequested) Monitor.Wait(_ejectLock);
            }
        });
        _state = VcpuRunState.Running;
    }

    internal bool Join(TimeSpan timeout) => _thread is null || _thread.Join(timeout);

    public CpuSnapshot Snapshot()
    {
        var r = Kvm.GetRegs(_handle);
        var s = Kvm.GetSregs(_handle);
        return new CpuSnapshot(Id, r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp,
            s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.cs.selector, s.cs.@base);
    }

    public string StateName => $"vcpu/{Id}";
    public ushort StateVersion => VcpuState.Version;

    /// <summary>Saves the registers, FPU/XSAVE, LAPIC, MSRs and events (the vCPU is parked, its last exit completed).</summary>
    public void SaveState(StateWriter writer) => VcpuState.Capture(_handle, _machine.MsrIndices, _machine.XsaveBytes).Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        var state = VcpuState.Read(reader, version);
        try { state.Apply(_handle, _machine.XsaveBytes); }
        catch (Exception e) when (e is NativeCallException or InvalidOperationException) { throw reader.Fail($"KVM refused it: {e.Message}"); }
    }

    /// <summary>
    /// KVM finishes an I/O or MMIO exit (stores an IN's data into RAX, advances RIP) only at the next KVM_RUN. Before
    /// parking, that KVM_RUN is made with immediate_exit set, so it completes the instruction and returns at once:
    /// a saved state never holds a half-done instruction. False when the run produced a new exit to handle first.
    /// </summary>
    private bool CompletePendingExit()
    {
        _run->immediate_exit = 1;
        int result = Kvm.Run(_handle);
        _run->immediate_exit = 0;
        return result != 0;
    }

    private void RunLoop()
    {
        Volatile.Write(ref _pthread, Libc.PthreadSelf());
        _state = VcpuRunState.Running;
        try
        {
            Span<byte> scratch = stackalloc byte[8];
            while (!_machine.StopRequested)
            {
                bool pauseRequested = _machine.PauseRequested, ejected = _ejected, leaveKvm = pauseRequested || ejected;
                if (leaveKvm && (_neverRan || CompletePendingExit()))
                {
                    if (pauseRequested)
                    {
                        _state = VcpuRunState.Paused;
                        _machine.ParkWhilePaused();
                        _state = VcpuRunState.Running;
                    }
                    else ParkEjected();
                    continue;
                }
                if (!leaveKvm && Kvm.Run(_handle) != 0) // (when a pause or eject was requested, the run above produced an exit)
                {
                    _run->immediate_exit = 0; // kicked: look at the requests again
                    continue;
                }
                _neverRan = false;
                uint reason = _run->exit_reason;
                if (reason < _exitCounts.Length) _exitCounts[reason]++;
                switch (reason)
                {
                    case KVM_EXIT_IO:
                        HandleIo();
                        break;
                    case KVM_EXIT_MMIO:
                        HandleMmio();
                        break;
                    case KVM_EXIT_HLT:
                        _machine.Finish(new VmExit(VmExitKind.PowerOff, $"vCPU {Id} executed HLT with no in-kernel irqchip to wake it"));
                        break;
                    case KVM_EXIT_SHUTDOWN:
                        _machine.Finish(new VmExit(VmExitKind.Crashed, $"triple fault on vCPU {Id}", Cpu: SafeSnapshot()));
                        break;
                    case KVM_EXIT_INTERNAL_ERROR:
                        _machine.Finish(new VmExit(VmExitKind.Crashed, DescribeInternalError(), Cpu: SafeSnapshot()));
                        break;
                    case KVM_EXIT_FAIL_ENTRY:
                        _machine.Finish(new VmExit(VmExitKind.Crashed,
                            $"VM entry failed on vCPU {Id}: hardware reason 0x{_run->fail_entry.hardware_entry_failure_reason:x}", Cpu: SafeSnapshot()));
                        break;
                    case KVM_EXIT_SYSTEM_EVENT:
                        HandleSystemEvent();
                        break;
                    case KVM_EXIT_INTR:
                        break;
                    case KVM_EXIT_DIRTY_RING_FULL:
                        _machine.CollectDirtyRings(); // KVM runs the vCPU again once its ring has room
                        break;
                    default:
                        _machine.Finish(new VmExit(VmExitKind.Crashed, $"unhandled KVM exit reason {reason} on vCPU {Id}", Cpu: SafeSnapshot()));
                        break;
                }
            }
        }
        catch (Exception e)
        {
            // A VMM-side failure ends this VM, never the process.
            _machine.Finish(new VmExit(VmExitKind.Crashed, $"VMM error on vCPU {Id}: {e.GetType().Name}: {e.Message}", Cpu: SafeSnapshot()));
        }
        finally
        {
            _state = VcpuRunState.Exited;
        }
    }

    private void HandleIo()
    {
        ref var io = ref _run->io;
        byte* data = (byte*)_run + io.data_offset;
        int size = io.size;
        if (size is not (1 or 2 or 4) || io.data_offset + (ulong)(size * io.count) > (ulong)_runSize) return;
        var bus = _machine.PortBus;
        for (uint i = 0; i < io.count; i++)
        {
            var span = new Span<byte>(data + i * size, size);
            if (io.direction == KVM_EXIT_IO_OUT) bus.Write(io.port, span);
            else bus.Read(io.port, span);
        }
    }

    private void HandleMmio()
    {
        ref var mmio = ref _run->mmio;
        int len = (int)Math.Min(mmio.len, 8u);
        fixed (byte* data = mmio.data)
        {
            var span = new Span<byte>(data, len);
            if (mmio.is_write != 0) _machine.MmioBus.Write(mmio.phys_addr, span);
            else _machine.MmioBus.Read(mmio.phys_addr, span);
        }
    }

    private void HandleSystemEvent()
    {
        switch (_run->system_event.type)
        {
            case KVM_SYSTEM_EVENT_SHUTDOWN: _machine.Finish(new VmExit(VmExitKind.PowerOff, "guest requested shutdown")); break;
            case KVM_SYSTEM_EVENT_RESET: _machine.RequestReset("guest requested reset"); break;
            default: _machine.Finish(new VmExit(VmExitKind.Crashed, $"guest system event {_run->system_event.type} on vCPU {Id}", Cpu: SafeSnapshot())); break;
        }
    }

    private string DescribeInternalError()
    {
        ref var ie = ref _run->@internal;
        string kind = ie.suberror switch
        {
            KVM_INTERNAL_ERROR_EMULATION => "instruction emulation failed",
            KVM_INTERNAL_ERROR_SIMUL_EX => "exception while delivering an exception",
            KVM_INTERNAL_ERROR_DELIVERY_EV => "event delivery failed",
            _ => $"suberror {ie.suberror}",
        };
        var data = new List<string>();
        for (int i = 0; i < Math.Min(ie.ndata, 16u); i++) data.Add($"0x{ie.data[i]:x}");
        return $"KVM internal error on vCPU {Id}: {kind}" + (data.Count > 0 ? $" (data {string.Join(' ', data)})" : "");
    }

    private CpuSnapshot? SafeSnapshot()
    {
        try { return Snapshot(); } catch { return null; }
    }

    public void Dispose()
    {
        Libc.Munmap((nint)_run, (nuint)_runSize);
        _handle.Dispose();
    }
}
