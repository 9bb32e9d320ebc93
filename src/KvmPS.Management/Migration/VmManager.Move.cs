using System.Globalization;
using System.Text.RegularExpressions;
using KvmPS.Contract;
using KvmPS.Interop;
using KvmPS.Management.Definitions;
using KvmPS.Management.Remote;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>
/// Live migration to another host over SSH (issue 12 item 4, docs/migration.md "Moving a VM to another host";
/// <c>Move-KvmVm</c>, <c>kvmps vm migrate</c>): the destination's kvmps receives the definition and starts a receiving
/// VMM (<c>kvmps vm receive</c>, through ssh). By default that VMM listens on a TCP port of the address the source
/// reached the host by and the stream goes there directly, authenticated by a one-time token given over ssh; with
/// <see cref="VmMoveOptions.Tunnel"/> it listens on a Unix socket and ssh forwards a loopback port here to it (the
/// stream is then encrypted by ssh, and no port is opened on either host).
/// </summary>
public sealed partial class VmManager
{
    /// <summary>How long <see cref="Move"/> lets the whole move take by default before cancelling it.</summary>
    public static readonly TimeSpan DefaultMoveTimeout = TimeSpan.FromMinutes(10);

    /// <summary>The hidden kvmps verb the source runs on the destination (CLI: <c>kvmps vm receive</c>).</summary>
    public static readonly IReadOnlyList<string> ReceiveCommand = ["vm", "receive"];

    /// <summary>
    /// Moves the running VM <paramref name="name"/> to <paramref name="destination"/> while its guest keeps running, as
    /// Hyper-V's Move-VM: once the destination runs it, the VM leaves this host's store (its disks, on shared storage,
    /// stay where they are). Only a Running VM. Failures: ssh's (<see cref="RemoteHostException"/>: unreachable, key
    /// refused, no kvmps there) or the destination refusing the VM (a VM of that name, a disk path it lacks, too little
    /// memory, a kvmps too old to receive) before anything is sent; the migration failing, the link dropping, the
    /// destination VMM dying or <see cref="VmMoveOptions.Timeout"/> passing (<see cref="VmMoveException"/>): in every
    /// case the VM runs on here, untouched, and the destination's half-made VM is removed there. Holds the store lock.
    /// </summary>
    public VmMoveResult Move(string name, SshTarget destination, SshTransport transport, VmMoveOptions? options = null, IProgress<OperationProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(transport);
        options ??= new VmMoveOptions();
        var limit = options.Timeout ?? DefaultMoveTimeout;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var host = destination.ToString();
        var activity = $"Moving VM '{name}' to host '{host}'";
        using (Store.Lock())
        {
            var definition = Store.Get(name);
            var snapshot = Probe(name);
            // A paused VM moves too and stays paused there (the VMM's End frame says so), as virsh migrate does.
            if (snapshot.State is not (VmState.Running or VmState.Paused) || snapshot.Pid is not { } pid || snapshot.Description is not { } description)
                throw new VmStateException(name, snapshot.State,
                    $"VM '{name}' is {Describe(snapshot.State)}; only a running or paused VM moves live (export and import an Off VM instead)");
            var transportName = options.Tunnel ? VmMoveResult.TunnelTransport : VmMoveResult.TcpTransport;
            if (!description.Requests.Contains(MigrateRequest.Name))
                throw new VmMoveException(name, host, $"VM '{name}': its kvmps-vmm (pid {pid}, version {description.Version}) cannot migrate; restart the VM on a newer kvmps-vmm first");
            var sent = definition;
            long diskBytes = 0;
            if (options.IncludeStorage)
                (sent, diskBytes) = DefinitionWithCopiedDisks(definition, host);
            else
                foreach (var disk in definition.Disks)
                    if (!Path.IsPathRooted(disk.Path))
                        throw new VmMoveException(name, host,
                            $"VM '{name}': its disk '{disk.Path}' is in this host's store, which '{host}' does not share; move it with -IncludeStorage (--include-storage), or put it on shared storage (the same absolute paths on both hosts)");

            // 1. The destination takes the definition and starts its receiving VMM (or refuses, naming why).
            progress?.Report(new OperationProgress(activity, $"Starting the receiving VMM on host '{host}'", 0) { VmName = name });
            using var session = SshSession.Start(transport, destination,
                [.. ReceiveCommand, "--timeout", ((int)Math.Ceiling(limit.TotalSeconds) + 30).ToString(CultureInfo.InvariantCulture),
                 .. (options.IncludeStorage ? (string[])["--include-storage", diskBytes.ToString(CultureInfo.InvariantCulture)] : []),
                 "--with-token",
                 .. (options.Tunnel ? (string[])[] : ["--tcp"]),
                 .. (!options.Tunnel && options.MigrationAddress is { } address ? (string[])["--migration-address", address] : [])]);
            session.WriteLine(Convert.ToBase64String(VmDefinitionJson.SerializeToUtf8Bytes(sent)));
            var tokenLine = ReadAnswer(session, "token ", limit);
            var listening = tokenLine is null ? null : ReadAnswer(session, "listening ", limit);
            if (listening is null)
                throw ReceiveRefused(name, host, session);
            var token = tokenLine!["token ".Length..].Trim();
            var remoteEndpoint = listening["listening ".Length..];

            try
            {
                // 2. With -Tunnel: a loopback port here, carried by ssh to the receiving VMM's socket there. Without:
                //    the receiving VMM's TCP port there, reached directly.
                SshForward? forward = null;
                if (options.Tunnel)
                {
                    progress?.Report(new OperationProgress(activity, $"Opening the ssh tunnel to '{host}'", 10) { VmName = name });
                    forward = SshForward.Start(transport, destination, remoteEndpoint, TimeSpan.FromSeconds(transport.Options.ConnectTimeoutSeconds + 20));
                }
                var uri = forward is null ? remoteEndpoint : $"tcp:127.0.0.1:{forward.Port}";
                MigrateStatusReply final;
                using (forward)
                {
                    // 3. migrate, and follow it on one connection until the destination runs the VM.
                    final = FollowMove(name, host, pid, uri, token, options, clock, limit, activity, progress, session);
                }

                // 4. The destination confirms it runs the VM and holds it in its store.
                var running = ReadAnswer(session, "running ", TimeSpan.FromSeconds(60));
                if (running is null
                    || !int.TryParse(running["running ".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var destinationPid))
                    throw new VmManagementException(name,
                        $"VM '{name}': its VMM handed the VM over to host '{host}', but the destination did not confirm it holds it ({session.Failure().Message}); the VM's definition stays on this host (Off) — check 'kvmps --host {host} vm list'");
                session.CloseInput();

                // 5. The VM leaves this host: the old VMM exits by itself (status 14); then its definition goes.
                progress?.Report(new OperationProgress(activity, "Removing the VM from this host", 95) { VmName = name });
                var exiting = System.Diagnostics.Stopwatch.StartNew();
                while (VmRuntimeProbe.IsVmmProcess(pid, Store.SocketPath(name)) && exiting.Elapsed < TimeSpan.FromSeconds(10))
                    Thread.Sleep(5);
                if (VmRuntimeProbe.IsVmmProcess(pid, Store.SocketPath(name)))
                    ProcessInterop.Kill(pid, ProcessInterop.SIGKILL); // the guest runs on the destination; this one must not go on
                var figures = SourceFigures(name, final);
                // With the disks copied, the source's images stay (virsh's --copy-storage-all keeps them too): the
                // store's disk folder goes to retained-disks/, images outside the store are never touched.
                var deleted = Store.DeleteWhileLocked(name, options.IncludeStorage ? DiskRetention.Keep : DiskRetention.Delete);
                session.WaitForExit(TimeSpan.FromSeconds(10));
                progress?.Report(new OperationProgress(activity, "Done", 100) { VmName = name, Completed = true });
                return new VmMoveResult(name, host, pid, destinationPid, figures.Total, figures.Downtime, figures.Bytes)
                {
                    DiskBytesSent = figures.DiskBytes, // the log line's when the VMM exited before a poll saw the last figures
                    RetainedDisksDirectory = deleted.RetainedDisksDirectory,
                    Transport = transportName,
                    StreamUri = options.Tunnel ? $"{uri} (ssh tunnel to {remoteEndpoint})" : uri,
                    Paused = snapshot.State == VmState.Paused,
                };
            }
            catch (Exception e) when (e is not VmManagementException || e is VmMoveException)
            {
                // The VM runs on here (the VMM resumed it); the destination removes its half-made VM when its input ends.
                session.WriteLine("abort");
                session.CloseInput();
                session.WaitForExit(TimeSpan.FromSeconds(15));
                throw;
            }
        }
    }

    /// <summary>
    /// The next line of <c>kvmps vm receive</c> that starts with <paramref name="prefix"/> (anything else a remote login
    /// prints, a banner or a runtime's first-run notice, is skipped); null when the session ended or the time is up.
    /// </summary>
    private static string? ReadAnswer(SshSession session, string prefix, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < timeout && session.ReadLine(timeout - clock.Elapsed) is { } line)
            if (line.StartsWith(prefix, StringComparison.Ordinal))
                return line;
        return null;
    }

    /// <summary>The destination's kvmps refused or failed before it listened: the reason, naming the host.</summary>
    private static Exception ReceiveRefused(string name, string host, SshSession session)
    {
        var failure = session.Failure();
        if (failure is RemoteCommandFailedException { ExitCode: 2 } old && old.RemoteMessage.Contains("receive", StringComparison.Ordinal))
            return new VmMoveException(name, host, $"VM '{name}' cannot move to host '{host}': its kvmps is too old to receive a VM ({old.RemoteMessage}); update KvmPS there", failure);
        if (failure is RemoteCommandFailedException refused)
            return new VmMoveException(name, host, $"VM '{name}' cannot move to host '{host}': {refused.RemoteMessage}; nothing changed on either host", failure);
        return failure; // ssh's own failure (unreachable, key refused, no kvmps): typed, naming the host
    }

    private MigrateStatusReply FollowMove(string name, string host, int pid, string uri, string token, VmMoveOptions options,
        System.Diagnostics.Stopwatch clock, TimeSpan limit, string activity, IProgress<OperationProgress>? progress, SshSession session)
    {
        var socketPath = Store.SocketPath(name);
        var request = new MigrateRequest
        {
            Uri = uri,
            Token = token,
            BandwidthBytesPerS = options.BandwidthBytesPerSecond,
            AutoConverge = options.AutoConverge,
            IncludeStorage = options.IncludeStorage,
        };
        if (options.DowntimeMs is { } downtime)
            request.DowntimeMs = downtime;
        using var client = VmmClient.Connect(socketPath, Options.QueryTimeout, Options.QueryTimeout);
        MigrateStatusReply status;
        try
        {
            status = client.Send(request, ContractJsonContext.Default.MigrateStatusReply);
        }
        catch (VmmException e)
        {
            throw new VmMoveException(name, host, $"VM '{name}': its VMM (pid {pid}) did not start the migration to '{host}': {(e is VmmRequestException r ? r.VmmMessage : e.Message)}; the VM runs on here", e);
        }
        var cancelled = false;
        MigrateStatusReply last = status;
        while (true)
        {
            if (status.Phase == MigrationPhases.Completed)
                return status;
            if (status.Phase is MigrationPhases.Failed or MigrationPhases.Cancelled)
            {
                if (!options.Tunnel && !cancelled && status.Error is { } error && IsConnectFailure(error))
                    throw new VmMoveException(name, host,
                        $"VM '{name}': host '{host}' cannot be reached at {uri["tcp:".Length..]} for the migration stream ({error}); a firewall between the hosts may block that port: retry with -Tunnel (--tunnel) to send the stream through ssh, or give -MigrationAddress (--migration-address) an address of '{host}' this host reaches; the VM runs on here and was removed from '{host}'");
                var why = !cancelled ? $"the migration failed: {status.Error}"
                    : options.Cancellation.IsCancellationRequested ? "it was interrupted and cancelled"
                    : $"it did not finish within {VmRuntimeProbe.Seconds(limit)} and was cancelled";
                throw new VmMoveException(name, host, $"VM '{name}': moving it to host '{host}' failed: {why}; the VM runs on here and was removed from '{host}'");
            }
            if (!cancelled && (clock.Elapsed > limit || session.HasExited || options.Cancellation.IsCancellationRequested) && status.Phase != MigrationPhases.Handover)
                cancelled = TryCancel(client);
            progress?.Report(new OperationProgress(activity, Phrase(status), Percent(status)) { VmName = name });
            Thread.Sleep(20);
            try
            {
                last = status;
                status = client.MigrateStatus();
            }
            catch (VmmException) when (!VmRuntimeProbe.IsVmmProcess(pid, socketPath))
            {
                // The VMM exits (status 14) right after the destination confirmed: its log line says so.
                if (File.ReadAllText(Store.VmmLogPath(name)) is var log && log.Contains($"kvmps-vmm: migrated to {request.Uri}: ", StringComparison.Ordinal))
                    return last with { Phase = MigrationPhases.Completed };
                throw new VmManagementException(name, $"VM '{name}': its VMM (pid {pid}) ended during the move to '{host}'{FormatTail(LastErrorLine(File.ReadAllText(Store.VmmLogPath(name))))}");
            }
            catch (VmmException) when (clock.Elapsed < limit + TimeSpan.FromSeconds(65))
            {
                // Pausing for the hand-over: ask again.
            }
        }
    }

    /// <summary>
    /// -IncludeStorage: the definition the destination stores, each disk a bare file name (its store's disk folder of the
    /// VM) without a backing file (the copy is standalone), and the bytes the copies may take there (each image's
    /// allocated bytes and its backing file's: the guest-visible data). Refuses, naming the disk, a read-only disk (the
    /// VMM copies writable disks only) and two disks of the same file name.
    /// </summary>
    private (VmDefinition Definition, long Bytes) DefinitionWithCopiedDisks(VmDefinition definition, string host)
    {
        var name = definition.Name;
        var disks = new List<DiskDefinition>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        long bytes = 0;
        foreach (var disk in definition.Disks)
        {
            if (disk.ReadOnly)
                throw new VmMoveException(name, host, $"VM '{name}': its disk '{disk.Path}' is read-only; -IncludeStorage copies writable disks only (detach it, or keep it on shared storage)");
            var path = Store.ResolveDiskPath(name, disk.Path);
            var fileName = Path.GetFileName(path);
            if (!names.Add(fileName))
                throw new VmMoveException(name, host, $"VM '{name}': two of its disks are named '{fileName}'; with -IncludeStorage both would land in one folder on '{host}': rename one first");
            bytes += FileSystemSpace.AllocatedBytes(path) ?? 0;
            if (disk.BackingImagePath is { } backing)
                bytes += FileSystemSpace.AllocatedBytes(Store.ResolveDiskPath(name, backing)) ?? 0;
            disks.Add(disk with { Path = fileName, BackingImagePath = null, SizeBytes = null });
        }
        return (definition with { Disks = new ValueList<DiskDefinition>(disks) }, bytes);
    }

    /// <summary>The source VMM's error when its connect to the destination's port failed (refused, unreachable, timed out).</summary>
    private static bool IsConnectFailure(string error) =>
        error.Contains("cannot connect to the destination", StringComparison.Ordinal)
        || error.Contains("did not accept the connection", StringComparison.Ordinal);

    private static string Phrase(MigrateStatusReply s) => s.Phase switch
    {
        MigrationPhases.PreCopy when s.DiskBytesTotal > 0 =>
            $"Copying disks and memory: round {s.Round}, {s.BytesSent >> 20} MiB sent (disks: {s.DiskBytesSent >> 20} MiB of {s.DiskBytesTotal >> 20} MiB, {s.DiskDirtyBytes >> 10} KiB dirty), {s.DirtyPages} pages dirty",
        MigrationPhases.PreCopy => $"Copying memory: round {s.Round}, {s.BytesSent >> 20} MiB sent, {s.DirtyPages} pages dirty",
        MigrationPhases.StopCopy => "Paused: sending the last pages and the device state",
        MigrationPhases.Handover => "Waiting for the destination to run the VM",
        _ => "Connecting to the receiving VMM",
    };

    private static int Percent(MigrateStatusReply s) => s.Phase switch
    {
        MigrationPhases.PreCopy => 20 + Math.Min(50, s.Round * 10),
        MigrationPhases.StopCopy => 80,
        MigrationPhases.Handover => 90,
        _ => 15,
    };

    [GeneratedRegex(@"kvmps-vmm: migrated to \S+: total (\d+) ms, downtime (\d+) ms, (\d+) bytes(?:[^\n]*?, (\d+) bytes of \d+ disks)?")]
    private static partial Regex MigratedLine();

    /// <summary>The figures from the last status, or (when the VMM exited before a poll saw them) from its log line.</summary>
    private (TimeSpan Total, TimeSpan? Downtime, long Bytes, long DiskBytes) SourceFigures(string name, MigrateStatusReply final)
    {
        try
        {
            var log = File.ReadAllText(Store.VmmLogPath(name));
            if (MigratedLine().Matches(log) is { Count: > 0 } m && m[^1].Value.Contains(final.Uri ?? "\0", StringComparison.Ordinal))
            {
                var g = m[^1].Groups;
                return (TimeSpan.FromMilliseconds(long.Parse(g[1].Value, CultureInfo.InvariantCulture)),
                        TimeSpan.FromMilliseconds(long.Parse(g[2].Value, CultureInfo.InvariantCulture)),
                        long.Parse(g[3].Value, CultureInfo.InvariantCulture),
                        g[4].Success ? long.Parse(g[4].Value, CultureInfo.InvariantCulture) : final.DiskBytesSent);
            }
        }
        catch (IOException)
        {
        }
        return (TimeSpan.FromMilliseconds(final.TotalMs), final.DowntimeMs is { } d ? TimeSpan.FromMilliseconds(d) : null, final.BytesSent, final.DiskBytesSent);
    }
}
