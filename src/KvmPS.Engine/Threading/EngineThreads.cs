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
