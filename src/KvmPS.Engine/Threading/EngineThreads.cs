using System.Runtime.InteropServices;

namespace KvmPS.Threading;

/// <summary>What a VMM thread does. One role, one kind of work: the hook where per-role limits (seccomp filters,
/// priorities) attach later, the way Firecracker filters its vCPU, API and VMM threads differently.</summary>
public enum ThreadRole
{
    /// <summary>Runs one vCPU's KVM_RUN loop.</summary>
    Vcpu,
    /// <summary>Serves device notifications (ioeventfds) for the PCI devices.</summary>
    DeviceIo,
    /// <summary>Receives frames from a tap device.</summary>
    TapReceive,
    /// <summary>Device work a guest cannot drive directly: timers, periodic polls, kicks.</summary>
    DeviceWorker,
    /// <summary>Moves bytes between a device and host sockets (vsock's Unix sockets): accept, connect, send, receive on non-blocking fds.</summary>
    HostSockets,
    /// <summary>Accepts and serves control-socket clients.</summary>
    Control,
    /// <summary>Moves console bytes between the serial port and its clients.</summary>
    Console,
    /// <summary>Sends the VM to another VMM (live migration, Migration/MigrationSender): memory rounds, then the state.</summary>
    Migration,
    /// <summary>The VNC server: accepts viewers and serves each (socket I/O, framebuffer reads, keyboard and mouse input).</summary>
    Vnc,
    /// <summary>Start-up work done beside the main thread while it builds the machine (Vm/EarlyKvmVm, the control socket).</summary>
    Setup,
}

/// <summary>
/// Every thread of the engine starts here, named by role. Devices get no thread pool and no <see cref="Timer"/>:
/// work they do outside a vCPU exit runs on a thread of theirs that they can pause and join. In kvmps-vmm with the
/// sandbox on (<see cref="Sandbox.VmmSandbox"/>), the new thread installs its role's seccomp filter before its body runs.
/// </summary>
public static class EngineThreads
{
    private const int DefaultStackBytes = 256 * 1024;

    /// <summary>Starts a background thread for <paramref name="role"/>; <paramref name="name"/> shows in <c>/proc/PID/task/*/comm</c>.</summary>
    public static Thread Start(ThreadRole role, string name, Action body, int stackBytes = DefaultStackBytes)
    {
        var thread = Create(role, name, body, stackBytes);
        thread.Start();
        return thread;
    }

    /// <summary>
    /// Starts a background thread for <paramref name="role"/> and returns without waiting for it to run, which
    /// <see cref="Thread.Start()"/> does. A native thread (pthread_create) entering the runtime through an unmanaged
    /// entry point, which attaches it as a managed thread; it is named and filtered as <see cref="Start"/>'s are.
    /// </summary>
    /// <param name="onAnotherCpu">
    /// Start it on another CPU than the caller's, when the process may use another: Linux puts a new thread on its
    /// creator's CPU, where it waits until the creator blocks or a tick moves one of them (2.8 ms median measured on
    /// a 2-CPU host, against 0.11 ms on the other CPU). For a thread that must run at once beside a caller that goes on
    /// working (a vCPU while the main thread finishes the start). Its first instruction gives it back every CPU the
    /// caller may use: a start hint, not a pinning. That call (sched_setaffinity) is made under the caller's filter,
    /// before the thread adds its own: only the main, set-up and control roles may launch such a thread.
    /// </param>
    public static EngineThread Launch(ThreadRole role, string name, Action body, int stackBytes = DefaultStackBytes, bool onAnotherCpu = false)
    {
        ArgumentNullException.ThrowIfNull(body);
        var thread = new EngineThread(role, name, body);
        var handle = GCHandle.Alloc(thread);
        int error = Create(thread, handle, stackBytes, onAnotherCpu);
        // The hint refused (the CPUs changed since they were read): started without it.
        if (error != 0 && thread.StartsAway) error = Create(thread, handle, stackBytes, onAnotherCpu: false);
        if (error != 0)
        {
            handle.Free();
            throw new OutOfMemoryException($"the {role} thread '{name}' could not be created: {Interop.Libc.Describe(error)}");
        }
        return thread;
    }

    /// <summary>pthread_create of <paramref name="thread"/>, detached (<paramref name="handle"/> goes to its entry); 0 or an errno value.</summary>
    private static unsafe int Create(EngineThread thread, GCHandle handle, int stackBytes, bool onAnotherCpu)
    {
        byte* attr = stackalloc byte[Interop.Libc.PthreadAttrBytes];
        Interop.Libc.PthreadAttrInit(attr);
        try
        {
            Interop.Libc.PthreadAttrSetStackSize(attr, (nuint)stackBytes);
            Interop.Libc.PthreadAttrSetDetachState(attr, Interop.Libc.PTHREAD_CREATE_DETACHED);
            if (onAnotherCpu) thread.StartAwayFromThisCpu(attr);
            else thread.StartAnywhere();
            return Interop.Libc.PthreadCreate(out _, attr, &LaunchedEntry, GCHandle.ToIntPtr(handle));
        }
        finally { Interop.Libc.PthreadAttrDestroy(attr); }
    }

    [UnmanagedCallersOnly]
    private static nint LaunchedEntry(nint state)
    {
        var handle = GCHandle.FromIntPtr(state);
        var thread = (EngineThread)handle.Target!;
        handle.Free();
        thread.Run();
        return 0;
    }

    /// <summary>Creates the thread without starting it (for owners that start it later).</summary>
    public static Thread Create(ThreadRole role, string name, Action body, int stackBytes = DefaultStackBytes)
    {
        ArgumentNullException.ThrowIfNull(body);
        return new Thread(() =>
        {
            // NativeAOT does not pass Thread.Name to the OS: set comm so that /proc and strace show the role's thread.
            Interop.Libc.SetThreadName(name);
            Sandbox.VmmSandbox.EnterThread(role, name);
            body();
        }, stackBytes) { IsBackground = true, Name = name };
    }
}

/// <summary>A thread <see cref="EngineThreads.Launch"/> started: what its owner can wait for.</summary>
public sealed class EngineThread
{
    private readonly ThreadRole _role;
    private readonly string _name;
    private readonly Action _body;
    private readonly ManualResetEventSlim _ended = new();

    /// <summary>The CPUs the creator may use, given back when the thread starts; null: its start was not steered.</summary>
    private byte[]? _cpus;

    internal EngineThread(ThreadRole role, string name, Action body) => (_role, _name, _body) = (role, name, body);

    /// <summary>Sets <paramref name="attr"/> to start the thread on any CPU the caller may use but its current one (if there is one).</summary>
    internal unsafe void StartAwayFromThisCpu(byte* attr)
    {
        var cpus = new byte[Interop.Libc.CpuSetBytes];
        fixed (byte* mask = cpus)
            if (Interop.Libc.SchedGetAffinity(0, (nuint)cpus.Length, mask) != 0) return;
        if (CpusOtherThan(cpus, Interop.Libc.SchedGetCpu()) is not { } others) return;
        fixed (byte* away = others)
            if (Interop.Libc.PthreadAttrSetAffinity(attr, (nuint)others.Length, away) != 0) return;
        _cpus = cpus;
    }

    /// <summary>The CPU mask <paramref name="cpus"/> without <paramref name="current"/>; null when that leaves none or the CPU is unknown.</summary>
    internal static byte[]? CpusOtherThan(byte[] cpus, int current)
    {
        if (current < 0 || current >= cpus.Length * 8) return null;
        var others = (byte[])cpus.Clone();
        others[current / 8] &= (byte)~(1 << (current % 8));
        return others.Any(b => b != 0) ? others : null;
    }

    public string Name => _name;

    /// <summary>True once the body returned, within <paramref name="timeout"/>.</summary>
    public bool Join(TimeSpan timeout) => _ended.Wait(timeout);

    /// <summary>Waits until the body returned.</summary>
    public void Join() => _ended.Wait();

    internal bool StartsAway => _cpus is not null;

    internal void StartAnywhere() => _cpus = null;

    private static unsafe void GiveBackCpus(byte[] cpus)
    {
        // An error (the CPUs changed since) leaves it on the others; under a filter without this call, SIGSYS (only the
        // main, set-up and control roles launch with the hint).
        fixed (byte* mask = cpus) Interop.Libc.SchedSetAffinity(0, (nuint)cpus.Length, mask);
    }

    internal void Run()
    {
        try
        {
            if (_cpus is { } cpus) GiveBackCpus(cpus);
            Interop.Libc.SetThreadName(_name);
            Sandbox.VmmSandbox.EnterThread(_role, _name);
            _body();
        }
        catch (Exception e)
        {
            // As an unhandled exception on a managed thread ends the process: an unmanaged entry point must not unwind.
            Environment.FailFast($"kvmps: unhandled exception on the {_role} thread '{_name}'", e);
        }
        finally { _ended.Set(); }
    }
}
