using System.Diagnostics;
using KvmPS.Contract;
using KvmPS.Migration;
using KvmPS.Vm;

namespace KvmPS.Vmm;

/// <summary>Live migration in the host process (docs/migration.md): the <c>migrate</c> requests and <c>--incoming</c>.</summary>
public sealed partial class VmmHost
{
    private readonly object _migrationLock = new();
    private MigrationSender? _migration;
    private MigrationReceiver? _receiver;

    /// <summary><c>--incoming</c>: receive the VM from this endpoint instead of booting it.</summary>
    public MigrationEndpoint? Incoming { get; init; }

    /// <summary><c>--incoming-token-file</c>: the one-time token a source must present first (null: none asked).</summary>
    public string? IncomingToken { get; init; }

    /// <summary>migrate: checks the request, starts the sender on its own thread, replies at once with its status.</summary>
    public MigrateStatusReply Migrate(MigrateRequest request) => Migrate(request, Devices.Config.PassedFiles.None);

    /// <summary>
    /// migrate with the files that came with it: at most one, the connection to a <c>unix:</c> destination the sender
    /// made (docs/vmm.md "Passing open files"), used instead of connecting to the path. The sender takes it once the
    /// request is accepted; the caller closes it otherwise.
    /// </summary>
    public MigrateStatusReply Migrate(MigrateRequest request, Devices.Config.PassedFiles files)
    {
        if (request.DowntimeMs is < 1 or > 60_000)
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"downtime_ms {request.DowntimeMs} is outside 1-60000");
        if (request.BandwidthBytesPerS is < 65536)
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"bandwidth_bytes_per_s {request.BandwidthBytesPerS} is below 65536");
        MigrationEndpoint endpoint;
        try { endpoint = MigrationEndpoint.Parse(request.Uri); }
        catch (ArgumentException e) { throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"uri: {e.Message}"); }
        if (files.Count > 0 && !endpoint.IsUnix)
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"passed_files: a passed connection is for a unix: destination; '{request.Uri}' is connected by the VMM");
        if (files.Count > 1)
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"passed_files: '{request.Uri}' takes one passed file (the connection to the destination), but {files.Count} came with the request; they were closed");
        var machine = RequireMachine();
        if (request.IncludeStorage && StorageCopySender.Disks(machine).FirstOrDefault(d => d.ReadOnly) is { } readOnly)
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"include_storage: the disk {readOnly.Backend.Path} is read-only; only writable disks can be copied (keep it on shared storage)");
        lock (_migrationLock)
        {
            if (_migration is { Active: true })
                throw new ControlProtocolException(ControlErrorCodes.InvalidState, $"a migration to {_migration.Status().Uri} is under way (migrate.status; migrate.cancel stops it)");
            if (machine.State is not (VmState.Running or VmState.Paused))
                throw new ControlProtocolException(ControlErrorCodes.InvalidState, $"only a Running or Paused VM can be migrated (it is {machine.State})");
            var connection = files.Count == 1 ? PassedConnection(endpoint, files.TakeAll()[0]) : null;
            try { _migration = new MigrationSender(machine, request, endpoint, ConfigJson, _log) { Connection = connection, FlushConsole = () => Console.Flush(ConsoleHub.PausedFlushTimeout) }; }
            catch { connection?.Dispose(); throw; }
            _migration.Start();
            return _migration.Status();
        }
    }

    /// <summary>
    /// The passed connection to <paramref name="endpoint"/> as a socket: one connected Unix stream socket, else it is
    /// closed and refused naming the destination and what came (a pipe, a file, a listening socket, …).
    /// </summary>
    private static System.Net.Sockets.Socket PassedConnection(MigrationEndpoint endpoint, Microsoft.Win32.SafeHandles.SafeFileHandle file)
    {
        if (Interop.UnixStreamSockets.WhyNotConnected(file) is { } what)
        {
            file.Dispose();
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"passed_files: the file passed for the destination '{endpoint.Uri}' is {what}; a migration takes a connected Unix stream socket");
        }
        // The descriptor moves to a socket handle: the file handle lets go of it without closing it.
        var handle = new System.Net.Sockets.SafeSocketHandle(file.DangerousGetHandle(), ownsHandle: true);
        file.SetHandleAsInvalid();
        try { return new System.Net.Sockets.Socket(handle); }
        catch (System.Net.Sockets.SocketException e)
        {
            handle.Dispose();
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"passed_files: the connection passed for '{endpoint.Uri}' cannot be used: {e.Message}");
        }
    }

    /// <summary>
    /// A snapshot harvests the dirty log too: taken during a migration it would take pages the migration still has to
    /// send, so it is refused until the migration has ended.
    /// </summary>
    private void RefuseDuringMigration(string request)
    {
        lock (_migrationLock)
            if (_migration is { Active: true })
                throw new ControlProtocolException(ControlErrorCodes.InvalidState, $"'{request}' cannot run during a migration (to {_migration.Status().Uri}); wait for it to end or cancel it");
    }

    public MigrateStatusReply MigrateStatus()
    {
        lock (_migrationLock) return _migration?.Status() ?? new MigrateStatusReply { Phase = MigrationPhases.None };
    }

    public MigrateStatusReply MigrateCancel()
    {
        MigrationSender? migration;
        lock (_migrationLock) migration = _migration;
        if (migration is not { Active: true })
            throw new ControlProtocolException(ControlErrorCodes.InvalidState, "no migration is under way");
        if (!migration.Cancel())
            throw new ControlProtocolException(ControlErrorCodes.InvalidState, "the migration is handing over: the destination may already run the VM, so it cannot be taken back");
        // The sender resumes the VM on its thread; wait briefly so the reply can say how it ended.
        for (int i = 0; i < 500 && migration.Active; i++) Thread.Sleep(10);
        return migration.Status();
    }

    /// <summary>How long a VMM that received a VM over a Unix socket waits for the source to give up the control socket.</summary>
    public static readonly TimeSpan ControlSocketTakeOverTimeout = TimeSpan.FromSeconds(60);

    private string? _deferredControlSocket;

    /// <summary>
    /// Binds the control socket. A local live upgrade (<c>--incoming unix:</c>) names the control socket the source
    /// still serves (its <c>.lock</c> is held): binding it is deferred until the source has handed the VM over and exited
    /// (<see cref="TakeOverControlSocket"/>), so clients keep one path for the VM across the upgrade.
    /// </summary>
    private ControlServer? BindControlSocket(string path)
    {
        if (Incoming is { IsUnix: true } && Interop.FileLock.IsHeld(path + ".lock"))
        {
            _deferredControlSocket = path;
            _log.WriteLine($"kvmps-vmm: the control socket {path} is in use by the VMM the VM comes from; this VMM takes it over once the VM runs here");
            return null;
        }
        return ControlServer.BindWithoutServing(path, this); // served once jailed: StartServingControl
    }

    /// <summary>
    /// After a received VM runs: binds the deferred control socket as soon as the source VMM (which exits with status 14
    /// once it got <c>Running</c>) has released it. The VM runs meanwhile; a source that never lets go is logged, and the
    /// VM keeps running here without a control socket (stopping it would lose the guest, which the source gave up).
    /// </summary>
    private void TakeOverControlSocket()
    {
        if (_deferredControlSocket is not { } path) return;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < ControlSocketTakeOverTimeout && !_stopRequested.IsSet)
        {
            if (!Interop.FileLock.IsHeld(path + ".lock"))
            {
                try
                {
                    var server = ControlServer.Bind(path, this);
                    lock (_lock) _control = server;
                    _deferredControlSocket = null;
                    _log.WriteLine($"kvmps-vmm: serving the control socket {path} (taken over from the source VMM after {clock.ElapsedMilliseconds} ms)");
                    return;
                }
                catch (VmmResourceException) { } // the source still held it at the bind: try again
            }
            Thread.Sleep(5);
        }
        if (!_stopRequested.IsSet)
            _log.WriteLine($"kvmps-vmm: error: the control socket {path} was not released within {ControlSocketTakeOverTimeout.TotalSeconds:0} s; the VM runs here without it");
    }

    /// <summary>--incoming: the machine built from the stream; throws <see cref="MigrationException"/>, null when stopped first.</summary>
    private VirtualMachine? ReceiveIncoming(MachineBuilder builder)
    {
        _receiver = new MigrationReceiver(Incoming!, IncomingToken) { SocketOwner = JailOwner };
        var machine = _receiver.Receive(builder, () => _stopRequested.IsSet, _log);
        if (machine is not null)
            _log.WriteLine($"kvmps-vmm: received the VM from {Incoming!.Uri}: " +
                (_receiver.MemoryShared ? "memory passed as memfds (not copied)" : $"{_receiver.PageBytes} bytes of memory") +
                (_receiver.DiskCopy is { } disks ? $", {disks.Bytes} bytes of {disks.Disks} disks" : "") +
                _receiver.HandedOver.Describe(Incoming!.IsUnix, "opened at the hand-over") + $" in {_receiver.Elapsed.TotalMilliseconds:0} ms" +
                (_receiver.SourcePaused ? "; paused, as it was on the source" : ""));
        return machine;
    }

    /// <summary>After the received VM started: tells the source. On failure returns the exit status (the VM is stopped here: the source keeps it).</summary>
    private int? ConfirmIncoming(VirtualMachine machine)
    {
        var receiver = _receiver!;
        _receiver = null;
        using (receiver)
        {
            DateTime confirming = DateTime.UtcNow;
            if (receiver.ConfirmRunning(out string? error))
            {
                // Set just before the vCPU threads start, as QEMU stamps RESUME: the source's "stopped at" line ends here.
                if (machine.StartedUtc is { } started)
                    _log.WriteLine($"kvmps-vmm: migration: the received VM started at unix time {MigrationSender.UnixSeconds(started)} s " +
                        $"(Running sent to the source {(confirming - started).TotalMilliseconds:0.0} ms later)");
                return null;
            }
            machine.Stop("the migration source could not be told the VM runs here");
            receiver.RemoveReceivedImages();
            return Fail(VmmExitCode.IncomingFailed, $"the VM ran here but the source could not be told, so it keeps the VM: {error}");
        }
    }
}
