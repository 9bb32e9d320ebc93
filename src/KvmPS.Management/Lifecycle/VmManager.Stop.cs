using KvmPS.Management.HostDevices;
using KvmPS.Management.Definitions;
using KvmPS.Interop;
using KvmPS.Management.Snapshots;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>Stopping a running VM: graceful first, forced after its timeout or when asked; the runtime files after.</summary>
public sealed partial class VmManager
{
    private VmStopResult StopActive(string name, RuntimeSnapshot snapshot, TimeSpan gracefulTimeout, bool force, bool lockHeld, bool signalIfUnreachable = true)
    {
        var socketPath = Store.SocketPath(name);
        VmStopOutcome outcome;
        var waited = TimeSpan.Zero;
        var killed = false;
        var pid = snapshot.Pid;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var client = VmmClient.Connect(socketPath, Options.QueryTimeout, Options.QueryTimeout);
                var result = client.Stop(graceful: !force, gracefulTimeout);
                outcome = StopOutcome(result, snapshot.State, force);
                waited = result.Waited;
                break;
            }
            catch (VmmException e) when (e is not VmmRequestException || VmRuntimeProbe.IsUnresponsive(e))
            {
                // Busy, stalled, or not serving its socket yet or any more.
                if (pid is { } p && !VmRuntimeProbe.IsVmmProcess(p, socketPath))
                {
                    outcome = VmStopOutcome.AlreadyEnded; // it exited meanwhile
                    break;
                }
                // Graceful: a VMM that is busy or stalled for a moment still gets its stop request, and its guest the
                // button, until the graceful timeout has passed; only then (or at once when forced) is it signalled.
                if (!force && clock.Elapsed < gracefulTimeout)
                {
                    Thread.Sleep(200);
                    continue;
                }
                if (!signalIfUnreachable)
                    throw new VmStateException(name, VmState.Unresponsive,
                        $"VM '{name}': kvmps-vmm did not answer its control socket for {VmRuntimeProbe.Seconds(clock.Elapsed)} ({e.Message}); it was left alone", e);
                // It handles SIGTERM as a stop (its guest is stopped by force).
                if (pid is { } target)
                    ProcessInterop.Kill(target, ProcessInterop.SIGTERM);
                outcome = VmStopOutcome.Unresponsive;
                waited = clock.Elapsed;
                break;
            }
            catch (VmmRequestException)
            {
                // It answered, but refused to stop: stop it by signal, as it handles SIGTERM as a stop.
                if (pid is { } target)
                    ProcessInterop.Kill(target, ProcessInterop.SIGTERM);
                outcome = VmStopOutcome.Unresponsive;
                break;
            }
        }
        if (pid is { } exiting && !VmRuntimeProbe.WaitForExit(exiting, socketPath, Options.ExitTimeout))
        {
            ProcessInterop.Kill(exiting, ProcessInterop.SIGKILL);
            killed = true;
            VmRuntimeProbe.WaitForExit(exiting, socketPath, TimeSpan.FromSeconds(5));
        }
        if (lockHeld)
            ClearRuntimeFiles(name, pid, removeSocket: killed);
        else
            using (Store.Lock())
                ClearRuntimeFiles(name, pid, removeSocket: killed);
        return new VmStopResult(name, snapshot.State, outcome, force ? TimeSpan.Zero : gracefulTimeout, waited, killed);
    }

    /// <summary>
    /// The outcome from the VMM's <c>stop</c> reply. A VMM older than the <c>outcome</c> field is judged from
    /// what it did report: no button pressed on a running guest means the guest had not enabled it.
    /// </summary>
    internal static VmStopOutcome StopOutcome(VmmStopResult reply, VmState before, bool force) => reply.Outcome switch
    {
        "PoweredOff" => VmStopOutcome.ShutDown,
        "TimedOut" => VmStopOutcome.TimedOut,
        "NoAcpi" => VmStopOutcome.NoAcpi,
        "Paused" => VmStopOutcome.Paused,
        "Forced" => VmStopOutcome.TurnedOff,
        "NotRunning" => VmStopOutcome.AlreadyEnded,
        _ when force => VmStopOutcome.TurnedOff,
        _ when reply.PowerButtonPressed => reply.Forced ? VmStopOutcome.TimedOut : VmStopOutcome.ShutDown,
        _ when !reply.Forced => VmStopOutcome.AlreadyEnded,
        _ when before == VmState.Paused => VmStopOutcome.Paused,
        _ when before == VmState.Running => VmStopOutcome.NoAcpi,
        _ => VmStopOutcome.AlreadyEnded,
    };

    private void KillAndClear(string name, int pid, string socketPath)
    {
        ProcessInterop.Kill(pid, ProcessInterop.SIGKILL);
        VmRuntimeProbe.WaitForExit(pid, socketPath, TimeSpan.FromSeconds(5));
        using (Store.Lock())
            ClearRuntimeFiles(name, pid, removeSocket: true);
    }

    /// <summary>
    /// Removes vmm.pid if it still names <paramref name="pid"/> (a newer start may have replaced it), and with
    /// <paramref name="removeSocket"/> the socket and lock file a killed VMM left behind — only when that
    /// process is gone. Caller holds the store lock.
    /// </summary>
    private void ClearRuntimeFiles(string name, int? pid, bool removeSocket)
    {
        var pidPath = Store.PidPath(name);
        var socketPath = Store.SocketPath(name);
        var recorded = VmRuntimeProbe.ReadPidFile(pidPath);
        if (recorded is not null && recorded != pid)
            return;
        if (recorded is { } p && VmRuntimeProbe.IsVmmProcess(p, socketPath))
            return;
        TryDeleteFile(pidPath);
        // The VMM is gone: its cgroup folder (kvmps/VM) goes with it when empty; the next start makes it again.
        VmmCgroupOptions.RemoveFolders(name);
        // The VMM is gone: host PCI functions it had go back to their drivers (nothing to do without a record).
        new PciPassthroughHost().ReleaseAfterStop(Store, name);
        if (removeSocket)
        {
            TryDeleteFile(socketPath);
            TryDeleteFile(socketPath + ".lock");
        }
    }
}
