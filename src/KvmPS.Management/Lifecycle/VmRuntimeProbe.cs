using System.Globalization;
using System.Text;
using KvmPS.Interop;
using KvmPS.Management.Snapshots;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>What is running for one VM right now.</summary>
/// <param name="PidFilePid">The pid recorded in vmm.pid (may be stale).</param>
/// <param name="ProcessAlive">The recorded pid is a live kvmps-vmm serving this VM's control socket.</param>
/// <param name="Pid">The live VMM's pid (from the VMM itself, or the pid file), if any.</param>
internal sealed record RuntimeSnapshot(
    VmState State,
    string? Reason,
    int? Pid,
    int? PidFilePid,
    bool ProcessAlive,
    VmmStatus? Status,
    KvmPS.Contract.DescribeReply? Description,
    KvmPS.Contract.MemoryStateReply? Memory = null)
{
    /// <summary>A VMM process exists for the VM (whatever state it reports).</summary>
    public bool Active => ProcessAlive || Status is not null;
}

/// <summary>
/// Determines a VM's runtime state without taking any lock and without disturbing a VMM.
/// <list type="bullet">
/// <item>The control socket answers → the VMM's own state (Created→Starting, Stopped→Stopping, Crashed with its reason).</item>
/// <item>Otherwise, the pid in vmm.pid is alive and its <c>/proc/PID/cmdline</c> names this VM's control socket
///   (so a recycled pid cannot fool us) and it is not a zombie (state Z in <c>/proc/PID/stat</c>: exited, not reaped) → <see cref="VmState.Starting"/>.</item>
/// <item>Otherwise, vmm.pid exists and the VMM's socket or its <c>.lock</c> file is still there → the VMM died
///   without its clean-exit path, which always removes both → <see cref="VmState.Crashed"/>.</item>
/// <item>Otherwise, saved state in the store (<c>saved/saved.json</c>) → <see cref="VmState.Saved"/>.</item>
/// <item>Otherwise → <see cref="VmState.Off"/> (never started, stopped, or the guest powered off).</item>
/// </list>
/// </summary>
internal static class VmRuntimeProbe
{
    public static RuntimeSnapshot Probe(VmStore store, string vmName, TimeSpan timeout)
    {
        var socketPath = store.SocketPath(vmName);
        var pidFilePid = ReadPidFile(store.PidPath(vmName));
        var alive = pidFilePid is { } p && IsVmmProcess(p, socketPath);

        string? unresponsive = null;
        if (File.Exists(socketPath))
        {
            try
            {
                using var client = VmmClient.Connect(socketPath, timeout, timeout);
                var status = client.Status();
                var description = client.Describe();
                // virtio-mem: the sizes the VMM resizes within (only a VMM started with a maximum answers memory.get).
                var memory = description.Requests.Contains(KvmPS.Contract.MemoryGetRequest.Name) ? client.GetMemory() : null;
                var pid = description.Pid > 0 ? description.Pid : pidFilePid;
                var (state, reason) = status.State switch
                {
                    VmmState.Created => (VmState.Starting, (string?)null),
                    VmmState.Running => (VmState.Running, null),
                    VmmState.Paused => (VmState.Paused, null),
                    VmmState.Stopped => (VmState.Stopping, status.Exit?.Reason ?? status.Exit?.Kind),
                    VmmState.Crashed => (VmState.Crashed, status.Exit?.Reason ?? "the guest crashed"),
                    _ => (VmState.Unknown, $"kvmps-vmm reports state '{status.StateText}'"),
                };
                return new RuntimeSnapshot(state, reason, pid, pidFilePid, alive || pid is not null, status, description, memory);
            }
            catch (VmmNotRunningException)
            {
                // Not listening (yet / anymore): decide from the process below.
            }
            catch (VmmException e)
            {
                unresponsive = e.Message;
            }
        }

        if (alive)
            return unresponsive is null
                ? new RuntimeSnapshot(VmState.Starting, $"kvmps-vmm process {pidFilePid} is not serving its control socket yet (starting or exiting)", pidFilePid, pidFilePid, true, null, null)
                : new RuntimeSnapshot(VmState.Unknown, unresponsive, pidFilePid, pidFilePid, true, null, null);
        if (unresponsive is not null)
            return new RuntimeSnapshot(VmState.Unknown, unresponsive, null, pidFilePid, false, null, null);
        if (pidFilePid is { } dead && (File.Exists(socketPath) || File.Exists(socketPath + ".lock")))
            return new RuntimeSnapshot(VmState.Crashed, $"VMM process {dead} died unexpectedly", null, pidFilePid, false, null, null);
        if (new SnapshotStore(store).HasSavedState(vmName))
            return new RuntimeSnapshot(VmState.Saved, null, null, pidFilePid, false, null, null);
        return new RuntimeSnapshot(VmState.Off, null, null, pidFilePid, false, null, null);
    }

    public static int? ReadPidFile(string path)
    {
        try
        {
            var text = File.ReadAllText(path).Trim();
            return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && pid > 0 ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// True if <paramref name="pid"/> is a running (not zombie) process whose command line has
    /// <c>--control-socket <paramref name="socketPath"/></c> — i.e. the VMM we launched for this VM, not a recycled pid.
    /// </summary>
    public static bool IsVmmProcess(int pid, string socketPath)
    {
        // A zombie has exited: it serves nothing and holds no lock, whether or not its parent ever reaps it.
        if (!ProcessInterop.IsRunning(pid))
            return false;
        byte[] cmdline;
        try
        {
            cmdline = File.ReadAllBytes($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/cmdline");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
        if (cmdline.Length == 0)
            return false; // kernel thread, or exited between the two reads
        var args = Encoding.UTF8.GetString(cmdline).Split('\0');
        for (var i = 0; i + 1 < args.Length; i++)
            if (args[i] == "--control-socket" && args[i + 1] == socketPath)
                return true;
        return false;
    }

    /// <summary>Polls until the VMM process is gone; false on timeout.</summary>
    public static bool WaitForExit(int pid, string socketPath, TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (IsVmmProcess(pid, socketPath))
        {
            if (Environment.TickCount64 >= deadline)
                return false;
            Thread.Sleep(10);
        }
        return true;
    }
}
