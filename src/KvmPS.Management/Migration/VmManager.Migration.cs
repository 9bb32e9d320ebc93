using System.Globalization;
using System.Text;
using KvmPS.Contract;
using KvmPS.Interop;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>
/// Local live upgrade (issue 12 item 2, docs/migration.md "Live upgrade from management"): a running VM moves into a
/// new kvmps-vmm process started from the binary on disk, over a Unix socket in the VM's folder, while its guest keeps
/// running. Guest RAM travels as memfds when the VM runs with them (every VM management starts, unless KSM is on), and
/// the disk images' open files go with it, so nothing is copied and no lock is released on the way.
/// </summary>
public sealed partial class VmManager
{
    /// <summary>The Unix socket in the VM's folder the new VMM receives the VM on (gone once the old VMM connected).</summary>
    public const string IncomingSocketFileName = "upgrade.sock";

    /// <summary>What kvmps-vmm --incoming logs once it listens (docs/migration.md, "The receiver").</summary>
    private const string IncomingListeningLine = "kvmps-vmm: waiting for a migration stream on ";

    /// <summary>How long <see cref="Upgrade"/> waits for the whole hand-over by default.</summary>
    public static readonly TimeSpan DefaultUpgradeTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Moves the running VM <paramref name="name"/> into a new kvmps-vmm (<see cref="VmmProcessLauncher.BinaryPath"/>):
    /// starts it with <c>--incoming unix:VMDIR/upgrade.sock</c> and the configuration the running VMM was started with,
    /// sends <c>migrate</c> to the running VMM and follows <c>migrate.status</c>. Once it completed, vmm.pid names the new
    /// VMM, which serves the VM's usual control socket (it takes it over when the old VMM exits with status 14).
    /// Only a Running VM (<see cref="VmStateException"/> otherwise: a paused one would run again in the new VMM). Any
    /// failure (the new VMM does not start or refuses the VM, the migration fails, <paramref name="timeout"/> passes)
    /// cancels the migration, kills the new VMM and throws <see cref="VmUpgradeException"/>: the VM runs on in its old
    /// VMM and the store is unchanged. Holds the store lock throughout (no start, stop or removal meanwhile).
    /// </summary>
    public VmUpgradeResult Upgrade(string name, TimeSpan? timeout = null, IProgress<OperationProgress>? progress = null)
    {
        var limit = timeout ?? DefaultUpgradeTimeout;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var activity = $"Upgrading the VMM of VM '{name}'";
        using (Store.Lock())
        {
            Store.Get(name);
            var snapshot = Probe(name);
            if (snapshot.State != VmState.Running || snapshot.Pid is not { } oldPid || snapshot.Description is not { } description)
                throw new VmStateException(name, snapshot.State, snapshot.State == VmState.Paused
                    ? $"VM '{name}' is paused; resume it before upgrading its VMM (the new VMM runs the VM it receives)"
                    : $"VM '{name}' is {Describe(snapshot.State)}; only a running VM's VMM can be upgraded (a stopped VM starts on the new binary anyway)");
            if (!description.Requests.Contains(MigrateRequest.Name))
                throw new VmUpgradeException(name, oldPid,
                    $"VM '{name}': its kvmps-vmm (pid {oldPid}, version {description.Version}) cannot migrate, so it cannot hand the VM to a new one; restart the VM to run the new binary");
            var configPath = Store.VmmConfigPath(name);
            if (!File.Exists(configPath))
                throw new VmUpgradeException(name, oldPid, $"VM '{name}': the configuration its VMM was started with ('{configPath}') is missing; restart the VM to run the new binary");
            var incomingPath = Path.Combine(Store.VmDirectory(name), IncomingSocketFileName);
            TryDeleteFile(incomingPath); // left by an upgrade whose new VMM was killed before it connected

            progress?.Report(new OperationProgress(activity, "Starting the new kvmps-vmm", 0) { VmName = name });
            VmmProcess incoming;
            try
            {
                incoming = Launcher.LaunchIncoming(Store, name, configPath, incomingPath, memfd: !Store.Get(name).MemoryBacking.KsmEnabled);
            }
            catch (Exception e) when (e is VmmLaunchException or VmmBinaryNotFoundException)
            {
                throw new VmUpgradeException(name, oldPid, $"VM '{name}': the new kvmps-vmm cannot be started: {e.Message}; the VM runs on in its VMM (pid {oldPid})", inner: e);
            }

            MigrateStatusReply final;
            try
            {
                final = HandOver(name, oldPid, incoming, incomingPath, PassesConnection(description), clock, limit, activity, progress);
                // From here the new VMM runs the guest: the store's runtime record names it.
                DurableFile.WriteAtomically(Store.PidPath(name), Encoding.ASCII.GetBytes(incoming.Pid.ToString(CultureInfo.InvariantCulture) + "\n"));
            }
            catch
            {
                Abandon(incoming, incomingPath);
                throw;
            }

            progress?.Report(new OperationProgress(activity, $"Waiting for kvmps-vmm (pid {incoming.Pid}) to serve the control socket", 90) { VmName = name });
            var now = WaitForNewVmm(name, oldPid, incoming, clock, limit + TimeSpan.FromSeconds(5));
            // The old VMM exits right after the hand-over (status 14); waiting a moment for it means the caller finds one
            // VMM per VM, not the old one still on its way out. One that lingers does not make the upgrade fail.
            var exiting = System.Diagnostics.Stopwatch.StartNew();
            while (VmRuntimeProbe.IsVmmProcess(oldPid, Store.SocketPath(name)) && exiting.Elapsed < OldVmmExitWait)
                Thread.Sleep(5);
            progress?.Report(new OperationProgress(activity, "Done", 100) { VmName = name, Completed = true });
            return new VmUpgradeResult(name, oldPid, incoming.Pid, Launcher.BinaryPath, final.MemoryShared,
                TimeSpan.FromMilliseconds(final.TotalMs), final.DowntimeMs is { } d ? TimeSpan.FromMilliseconds(d) : null)
            {
                Vm = ToInfo(Store.Get(name), now),
            };
        }
    }

    /// <summary>
    /// Whether the running VMM takes the connection to the new one with <c>migrate</c> (it says so in <c>describe</c>).
    /// One from before cannot be asked again by path once this side connected (the receiver accepts one connection),
    /// so it is asked by path from the start.
    /// </summary>
    private static bool PassesConnection(DescribeReply description) =>
        description.PassedFilesRequests?.Contains(MigrateRequest.Name) == true;

    /// <summary>
    /// Waits for the new VMM to listen, sends <c>migrate</c> to the old one and follows it to <c>completed</c>. Throws
    /// <see cref="VmUpgradeException"/> when it fails, is cancelled, or the time is up (then it is cancelled first).
    /// </summary>
    private MigrateStatusReply HandOver(string name, int oldPid, VmmProcess incoming, string incomingPath, bool passConnection,
        System.Diagnostics.Stopwatch clock, TimeSpan limit, string activity, IProgress<OperationProgress>? progress)
    {
        var socketPath = Store.SocketPath(name);
        // 1. The new VMM listens on the incoming socket once it has read its configuration. The socket file exists from
        //    bind() on, before listen(): its log line (written after listen) is the sign it accepts.
        switch (WaitUntilIncomingListens(incoming, incomingPath, clock, limit))
        {
            case IncomingWait.Exited:
                throw NewVmmFailed(name, oldPid, incoming, "exited before it listened for the VM");
            case IncomingWait.TimedOut:
                throw new VmUpgradeException(name, oldPid,
                    $"VM '{name}': the new kvmps-vmm (pid {incoming.Pid}) did not listen on '{incomingPath}' within {VmRuntimeProbe.Seconds(limit)}; it was killed and the VM runs on in its VMM (pid {oldPid})",
                    incoming.ReadLogTail());
        }

        // 2. migrate, then follow it. The old VMM exits (status 14) as soon as the new one runs the VM, so its socket
        //    may stop answering right after the last status said completed, or before we saw it.
        progress?.Report(new OperationProgress(activity, $"Handing the VM from pid {oldPid} to pid {incoming.Pid}", 30) { VmName = name });
        // One connection to the old VMM for the whole hand-over: once it exits, the new VMM serves the same socket path,
        // and a fresh connection would ask the new one (which has no migration: phase none).
        VmmClient? client = null;
        MigrateStatusReply status;
        IReadOnlyList<System.Runtime.InteropServices.SafeHandle> connection = [];
        try
        {
            client = VmmClient.Connect(socketPath, Options.QueryTimeout, Options.QueryTimeout);
            // Connected here and passed (docs/vmm.md "Passing open files"): the VMM, jailed, need not reach the path.
            if (passConnection)
                connection = VmmPassedFiles.ConnectMigration(incomingPath);
            status = client.Migrate("unix:" + incomingPath, connection);
        }
        catch (Exception e) when (e is VmmException or PassedFileException)
        {
            client?.Dispose();
            throw new VmUpgradeException(name, oldPid, $"VM '{name}': its VMM (pid {oldPid}) did not start the migration: {(e is VmmRequestException r ? r.VmmMessage : e.Message)}; the VM runs on there", incoming.ReadLogTail(), e);
        }
        finally
        {
            VmmPassedFiles.Close(connection); // the VMM holds its own descriptor once it answered
        }
        try
        {
            var cancelled = false;
            while (true)
            {
                if (status.Phase == MigrationPhases.Completed)
                    return status;
                if (status.Phase is MigrationPhases.Failed or MigrationPhases.Cancelled)
                {
                    var tail = incoming.ReadLogTail();
                    var why = cancelled ? $"it did not finish within {VmRuntimeProbe.Seconds(limit)} and was cancelled" : $"the migration failed: {status.Error}";
                    throw new VmUpgradeException(name, oldPid, $"VM '{name}': upgrading its VMM failed: {why}; the VM runs on in its VMM (pid {oldPid})" + FormatTail(tail), tail);
                }
                if (!cancelled && clock.Elapsed > limit && status.Phase != MigrationPhases.Handover && client is not null)
                    cancelled = TryCancel(client);
                Thread.Sleep(10);
                try
                {
                    // The socket is the old VMM's until it exits (the new one binds it only then), so a reconnect reaches it.
                    client ??= VmmClient.Connect(socketPath, Options.QueryTimeout, Options.QueryTimeout);
                    status = client.MigrateStatus();
                    if (status.Phase == MigrationPhases.None && !VmRuntimeProbe.IsVmmProcess(oldPid, socketPath))
                        return CompletedAsTheNewVmmSays(incoming, clock); // reconnected to the new VMM: the old one handed over
                }
                catch (VmmException) when (!VmRuntimeProbe.IsVmmProcess(oldPid, socketPath))
                {
                    // The old VMM is gone. It exits by itself only once the new one confirmed it runs the VM: then the new
                    // VMM is alive. If both are gone, the VM is lost, and saying so is all that is left.
                    if (incoming.Exited.IsCompleted)
                        throw new VmManagementException(name, $"VM '{name}': both its VMM (pid {oldPid}) and the new one (pid {incoming.Pid}, {incoming.Exited.Result}) ended during the upgrade" + FormatTail(incoming.ReadLogTail()));
                    return CompletedAsTheNewVmmSays(incoming, clock);
                }
                catch (VmmException) when (clock.Elapsed < limit + TimeSpan.FromSeconds(65))
                {
                    // The old VMM runs but did not answer in time (it is pausing the VM): ask again on a new connection.
                    client?.Dispose();
                    client = null;
                }
            }
        }
        finally
        {
            client?.Dispose();
        }
    }

    private enum IncomingWait { Listening, Exited, TimedOut }

    /// <summary>
    /// Waits for a <c>kvmps-vmm --incoming unix:PATH</c> to accept: the socket file exists from bind() on, before
    /// listen(); its log line (written after listen) is the sign. Shared by the live upgrade and the receiving end of a
    /// move between hosts.
    /// </summary>
    private static IncomingWait WaitUntilIncomingListens(VmmProcess incoming, string incomingPath, System.Diagnostics.Stopwatch clock, TimeSpan limit)
    {
        while (!File.Exists(incomingPath) || !incoming.ReadLogTail().Contains(IncomingListeningLine, StringComparison.Ordinal))
        {
            if (incoming.Exited.IsCompleted)
                return IncomingWait.Exited;
            if (clock.Elapsed > limit)
                return IncomingWait.TimedOut;
            Thread.Sleep(5);
        }
        return IncomingWait.Listening;
    }

    /// <summary>
    /// The old VMM handed over and exited before a status poll saw it complete (a memfd upgrade takes a few ms): its
    /// last status is stale, so the figures come from the new VMM's log line ("received the VM from URI: memory passed
    /// as memfds (not copied) in N ms" or "...: N bytes of memory in N ms") and this side's clock.
    /// </summary>
    private static MigrateStatusReply CompletedAsTheNewVmmSays(VmmProcess incoming, System.Diagnostics.Stopwatch clock)
    {
        string tail = incoming.ReadLogTail();
        int at = tail.LastIndexOf("received the VM from ", StringComparison.Ordinal);
        string line = at < 0 ? "" : tail[at..].Split('\n')[0];
        return new MigrateStatusReply
        {
            Phase = MigrationPhases.Completed,
            MemoryShared = line.Contains("memory passed as memfds", StringComparison.Ordinal),
            TotalMs = clock.ElapsedMilliseconds,
        };
    }

    private static bool TryCancel(VmmClient client)
    {
        try
        {
            client.MigrateCancel();
            return true;
        }
        catch (VmmException)
        {
            return false; // handing over already (the destination may run the VM): its outcome decides
        }
    }

    private static VmUpgradeException NewVmmFailed(string name, int oldPid, VmmProcess incoming, string what)
    {
        var exit = incoming.Exited.Result;
        var tail = incoming.ReadLogTail();
        var status = exit.ExitCode is { } code ? $"status {code} ({ExitMeaning(code)})" : exit.ToString();
        return new VmUpgradeException(name, oldPid,
            $"VM '{name}': the new kvmps-vmm (pid {incoming.Pid}) {what}: {status}{FormatTail(tail)}; the VM runs on in its VMM (pid {oldPid})", tail);
    }

    /// <summary>A failed upgrade: the new VMM goes (it holds nothing of the VM's: vmm.pid and the control socket are the old one's).</summary>
    private static void Abandon(VmmProcess incoming, string incomingPath)
    {
        if (!incoming.Exited.IsCompleted)
        {
            ProcessInterop.Kill(incoming.Pid, ProcessInterop.SIGKILL);
            incoming.Exited.Wait(TimeSpan.FromSeconds(5));
        }
        TryDeleteFile(incomingPath);
    }

    /// <summary>After the hand-over: the new VMM serves the VM's control socket once the old one let it go.</summary>
    /// <summary>How long <see cref="Upgrade"/> waits for the old VMM to be gone once the new one serves the VM.</summary>
    private static readonly TimeSpan OldVmmExitWait = TimeSpan.FromSeconds(5);

    private RuntimeSnapshot WaitForNewVmm(string name, int oldPid, VmmProcess incoming, System.Diagnostics.Stopwatch clock, TimeSpan limit)
    {
        while (true)
        {
            var snapshot = Probe(name);
            if (snapshot.Pid == incoming.Pid && snapshot.Status is not null)
                return snapshot;
            if (incoming.Exited.IsCompleted)
                throw new VmManagementException(name,
                    $"VM '{name}': the new kvmps-vmm (pid {incoming.Pid}) received the VM from pid {oldPid} but then ended ({incoming.Exited.Result})" + FormatTail(incoming.ReadLogTail()));
            if (clock.Elapsed > limit)
                throw new VmManagementException(name,
                    $"VM '{name}': the new kvmps-vmm (pid {incoming.Pid}) runs the VM but did not serve its control socket within {VmRuntimeProbe.Seconds(limit)} (the old VMM, pid {oldPid}, may not have exited); see vmm.log");
            Thread.Sleep(10);
        }
    }
}
