using System.Globalization;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Remote;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps vm migrate NAME --to [user@]HOST [--identity KEY] [--downtime MS] [--bandwidth BYTES_PER_S] [--auto-converge]
/// [--include-storage] [--tunnel] [--migration-address ADDR] [--timeout SECONDS] [--json] [--progress]</c> (Move-KvmVm's twin, virsh migrate --live over ssh), and the hidden
/// <c>kvmps vm receive</c> the source runs on the destination through ssh (docs/migration.md, "Moving a VM to another host").
/// </summary>
internal sealed class VmMigrateCommand(CliApp app)
{
    public int Migrate(ParsedArgs options)
    {
        if (options.Help)
            throw new CliApp.HelpRequested("vm migrate");
        const string usage = "vm migrate: usage: kvmps vm migrate NAME --to [user@]HOST [--identity KEY] [--downtime MS] [--bandwidth BYTES_PER_S] [--auto-converge] [--include-storage] [--tunnel] [--migration-address ADDR] [--timeout SECONDS] [--json] [--progress]";
        if (options.Positional.Count != 1 || options.Value("--to") is not { } to)
            throw new UsageException(usage);
        var name = options.Positional[0];
        if (options.Has("--tunnel") && options.Value("--migration-address") is not null)
            throw new UsageException("vm migrate: --migration-address is for the direct TCP stream; with --tunnel the stream goes through ssh");
        SshTarget target;
        try
        {
            target = SshTarget.Parse(to);
        }
        catch (InvalidRemoteNameException e)
        {
            throw new UsageException($"vm migrate: --to: {e.Message}");
        }
        var moveOptions = new VmMoveOptions
        {
            DowntimeMs = (int?)Number(options, "--downtime", 1, 60_000),
            BandwidthBytesPerSecond = Number(options, "--bandwidth", 65_536, long.MaxValue),
            AutoConverge = options.Has("--auto-converge"),
            IncludeStorage = options.Has("--include-storage"),
            Tunnel = options.Has("--tunnel"),
            MigrationAddress = options.Value("--migration-address"),
            Timeout = Number(options, "--timeout", 1, 86_400) is { } s ? TimeSpan.FromSeconds(s) : null,
        };
        var identity = options.Value("--identity") ?? (app.GetEnvironment("KVMPS_SSH_KEY") is { Length: > 0 } k ? k : null);
        var transport = new SshTransport(SshTransportOptions.FromEnvironment(app.GetEnvironment) with { KeyFilePath = identity });
        var json = options.Has("--json");
        // --progress: the lines with their percentage, also with --json (a remote Move-KvmVm -HostName reads them).
        var progress = options.Has("--progress") ? new Progress(app.Err, withPercent: true) : json ? null : new Progress(app.Err, withPercent: false);
        VmMoveResult result;
        // Ctrl+C (SIGINT) or SIGTERM cancels the move instead of killing kvmps mid-way, which would leave the VMM
        // migrating with nobody to move the definition or clean the destination.
        using var interrupted = new CancellationTokenSource();
        void Interrupt(System.Runtime.InteropServices.PosixSignalContext context)
        {
            context.Cancel = true;
            interrupted.Cancel();
        }
        using var onInt = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, Interrupt);
        using var onTerm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, Interrupt);
        moveOptions = moveOptions with { Cancellation = interrupted.Token };
        try
        {
            result = app.Manager.Move(name, target, transport, moveOptions, progress);
        }
        catch (FileNotFoundException e)
        {
            throw new UsageException(e.Message);
        }
        catch (RemoteHostException e)
        {
            app.Err.WriteLine($"kvmps: {e.Message}; VM '{name}' runs on here");
            return ExitCodes.RemoteHost;
        }
        if (json)
            app.Out.WriteLine(CliOutput.Json(w => VmMoveResultJson.Write(w, result, moveOptions.IncludeStorage)));
        else
            app.Out.WriteLine($"VM '{result.Name}' moved to host '{result.DestinationHost}' (kvmps-vmm pid {result.DestinationPid} there{(result.Paused ? ", paused" : "")}) over {result.Transport} ({result.StreamUri}): " +
                $"total {result.Total.TotalMilliseconds:0} ms{(result.Downtime is { } dt ? $", downtime {dt.TotalMilliseconds:0} ms" : "")}, {result.BytesSent} bytes" +
                (moveOptions.IncludeStorage ? $" ({result.DiskBytesSent} of them disk data); the disk images stay on this host{(result.RetainedDisksDirectory is { } kept ? $" (the store's in {kept})" : "")}." : "."));
        return ExitCodes.Ok;
    }

    /// <summary>
    /// Hidden: the destination's end of a move, run by the source through ssh. Reads the VM definition (one base64
    /// line) on stdin; with <c>--with-token</c> prints <c>token HEX</c> (the one-time token the stream must bring);
    /// prints <c>listening SOCKET</c> (or, with <c>--tcp</c>, <c>listening tcp:ADDR:PORT</c>) once its receiving VMM
    /// waits, then <c>running PID</c> once the VM runs here. Input ending (or an <c>abort</c> line) before that removes
    /// the VM again.
    /// </summary>
    public int Receive(ParsedArgs options)
    {
        var timeout = TimeSpan.FromSeconds(Number(options, "--timeout", 1, 86_400) ?? 660);
        var line = app.In.ReadLine() ?? throw new UsageException("vm receive: expects the VM definition (base64 JSON) on the first line of its input");
        VmDefinition definition;
        try
        {
            definition = VmDefinitionJson.Deserialize(Convert.FromBase64String(line.Trim()));
        }
        catch (FormatException e)
        {
            throw new UsageException($"vm receive: the definition is not base64: {e.Message}");
        }
        var storageBytes = options.Value("--include-storage") is { } text
            ? long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var b) ? b : throw new UsageException($"vm receive: --include-storage '{text}' is not a byte count")
            : (long?)null;
        string? address = null;
        if (options.Has("--tcp"))
            address = options.Value("--migration-address") ?? ServerAddressOfSsh()
                ?? throw new UsageException("vm receive: --tcp: this session has no SSH_CONNECTION to tell the address the source reached this host by; give --migration-address ADDR");
        var incoming = app.Manager.PrepareIncoming(definition, TimeSpan.FromSeconds(30), storageBytes, new IncomingListen(address, options.Has("--with-token")));
        if (incoming.Token is { } token)
            app.Out.WriteLine("token " + token);
        app.Out.WriteLine("listening " + (address is null ? incoming.SocketPath : incoming.Uri));
        app.Out.Flush();
        var abandoned = 0;
        var watcher = new Thread(() =>
        {
            try
            {
                while (app.In.ReadLine() is { } l)
                    if (l.Trim() == "abort")
                        break;
            }
            catch (IOException)
            {
            }
            Interlocked.Exchange(ref abandoned, 1);
        }) { IsBackground = true, Name = "receive input" };
        watcher.Start();
        var pid = app.Manager.CompleteIncoming(incoming, () => Volatile.Read(ref abandoned) == 1, timeout);
        app.Out.WriteLine("running " + pid.ToString(CultureInfo.InvariantCulture));
        app.Out.Flush();
        return ExitCodes.Ok;
    }

    /// <summary>The server side of this ssh session (SSH_CONNECTION: client address, client port, server address, server port): the address the source reached this host by.</summary>
    private string? ServerAddressOfSsh() =>
        app.GetEnvironment("SSH_CONNECTION") is { } connection && connection.Split(' ', StringSplitOptions.RemoveEmptyEntries) is { Length: 4 } parts ? parts[2] : null;

    private static long? Number(ParsedArgs options, string option, long min, long max)
    {
        if (options.Value(option) is not { } text)
            return null;
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < min || n > max)
            throw new UsageException($"vm migrate: {option} '{text}' is not a number from {min} to {max}");
        return n;
    }

    /// <summary>Progress lines on stderr, one per change of step.</summary>
    private sealed class Progress(TextWriter err, bool withPercent) : IProgress<OperationProgress>
    {
        private string? _last;

        public void Report(OperationProgress value)
        {
            var phase = withPercent ? value.Status : value.Status.Split(':')[0];
            if (phase == _last)
                return;
            _last = phase;
            err.WriteLine(withPercent ? $"{RemoteKvmps.ProgressPrefix}{value.PercentComplete} {value.Status}" : $"kvmps: {value.Status}");
            err.Flush();
        }
    }
}
