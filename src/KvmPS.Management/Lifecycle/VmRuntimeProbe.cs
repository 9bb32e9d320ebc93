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
    /// <summary>How long the probe waited for a VMM that did not answer (<see cref="VmState.Unresponsive"/>).</summary>
    public TimeSpan? UnresponsiveFor { get; init; }

    /// <summary>A VMM process exists for the VM (whatever state it reports).</summary>
    public bool Active => ProcessAlive || Status is not null;
}

/// <summary>
/// Determines a VM's runtime state without taking any lock and without disturbing a VMM.
/// <list type="bullet">
/// <item>The control socket answers → the VMM's own state (Created→Starting, Stopped→Stopping, Crashed with its reason).</item>
/// <item>The socket exists but the VMM does not answer in time, or all its connections are busy → <see cref="VmState.Unresponsive"/>
///   with how long it was waited for (never Starting or Unknown: the guest may be healthy).</item>
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

        string? unknown = null, unresponsive = null;
        var waited = System.Diagnostics.Stopwatch.StartNew();
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
            catch (Exception e) when (IsUnresponsive(e))
            {
                unresponsive = UnresponsiveReason(e, pidFilePid, alive, waited.Elapsed);
            }
            catch (VmmException e)
            {
                unknown = e.Message;
            }
        }

        if (alive)
        {
            if (unresponsive is not null)
                return new RuntimeSnapshot(VmState.Unresponsive, unresponsive, pidFilePid, pidFilePid, true, null, null) { UnresponsiveFor = waited.Elapsed };
            return unknown is null
                ? new RuntimeSnapshot(VmState.Starting, $"kvmps-vmm process {pidFilePid} is not serving its control socket yet (starting or exiting)", pidFilePid, pidFilePid, true, null, null)
                : new RuntimeSnapshot(VmState.Unknown, unknown, pidFilePid, pidFilePid, true, null, null);
        }
        // Something holds the socket but it is not the recorded process (a pid file lost or rewritten): still a VMM
        // that may be running a guest, never to be treated as gone.
        if (unresponsive is not null)
            return new RuntimeSnapshot(VmState.Unresponsive, unresponsive, null, pidFilePid, false, null, null) { UnresponsiveFor = waited.Elapsed };
        if (unknown is not null)
            return new RuntimeSnapshot(VmState.Unknown, unknown, null, pidFilePid, false, null, null);
        if (pidFilePid is { } dead && (File.Exists(socketPath) || File.Exists(socketPath + ".lock")))
            return new RuntimeSnapshot(VmState.Crashed, CrashReason(store.VmmLogPath(vmName), dead), null, pidFilePid, false, null, null);
        if (new SnapshotStore(store).HasSavedState(vmName))
            return new RuntimeSnapshot(VmState.Saved, null, null, pidFilePid, false, null, null);
        return new RuntimeSnapshot(VmState.Off, null, null, pidFilePid, false, null, null);
    }

    /// <summary>The line a VMM's sandbox writes to its stderr (vmm.log) before it ends the process (kvmps-vmm's VmmSandbox).</summary>
    internal const string SandboxViolationPrefix = "kvmps-vmm: sandbox violation: pid ";

    /// <summary>
    /// Why VMM <paramref name="pid"/> died: "died unexpectedly", or, when its sandbox ended it (exit status 18), the
    /// thread and the syscall its vmm.log names (docs/confinement.md, "The VMM sandbox").
    /// </summary>
    internal static string CrashReason(string vmmLogPath, int pid)
    {
        string marker = $"{SandboxViolationPrefix}{pid}: ";
        try
        {
            using var log = new FileStream(vmmLogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            const int TailBytes = 64 * 1024;
            if (log.Length > TailBytes) log.Seek(-TailBytes, SeekOrigin.End);
            using var reader = new StreamReader(log);
            string? violation = null;
            while (reader.ReadLine() is { } line)
                if (line.StartsWith(marker, StringComparison.Ordinal)) violation = line[marker.Length..];
            if (violation is not null) return $"VMM process {pid} was ended by its sandbox: {violation}";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return $"VMM process {pid} died unexpectedly";
    }

    /// <summary>
    /// A failure that says the VMM is there but not answering now: a connect or reply timeout, or every connection slot
    /// busy. Not a protocol error or a refusal, which are answers (<see cref="VmState.Unknown"/>).
    /// </summary>
    internal static bool IsUnresponsive(Exception e) =>
        e is VmmTimeoutException || e is VmmRequestException { Code: KvmPS.Contract.ControlErrorCodes.Busy };

    private static string UnresponsiveReason(Exception e, int? pid, bool alive, TimeSpan waited)
    {
        var who = alive && pid is { } p ? $"kvmps-vmm (pid {p})" : "the kvmps-vmm on this VM's control socket";
        var why = e is VmmRequestException busy
            ? $"is busy: {busy.VmmMessage}"
            : $"did not answer its control socket within {Seconds(waited)}";
        var stopped = alive && pid is { } q && IsStopped(q) ? " (the process is stopped: SIGSTOP or a debugger)" : "";
        return $"{who} {why}{stopped}; the guest may still be running";
    }

    /// <summary>State T (stopped by a signal) or t (stopped by a tracer) in <c>/proc/PID/stat</c>.</summary>
    private static bool IsStopped(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            var close = stat.LastIndexOf(')');
            return close >= 0 && close + 2 < stat.Length && stat[close + 2] is 'T' or 't';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    internal static string Seconds(TimeSpan t) =>
        t.TotalSeconds.ToString(t.TotalSeconds < 10 ? "0.#" : "0", CultureInfo.InvariantCulture) + " s";

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
