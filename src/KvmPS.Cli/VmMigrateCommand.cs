using System.Globalization;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Remote;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps vm migrate NAME --to [user@]HOST [--identity KEY] [--downtime MS] [--bandwidth BYTES_PER_S] [--auto-converge]
/// [--include-storage] [--timeout SECONDS] [--json]</c> (Move-KvmVm's twin, virsh migrate --live over ssh), and the hidden
/// <c>kvmps vm receive</c> the source runs on the destination through ssh (docs/migration.md, "Moving a VM to another host").
/// </summary>
internal sealed class VmMigrateCommand(CliApp app)
{
    public int Migrate(ParsedArgs options)
    {
        if (options.Help)
            throw new CliApp.HelpRequested("vm migrate");
        const string usage = "vm migrate: usage: kvmps vm migrate NAME --to [user@]HOST [--identity KEY] [--downtime MS] [--bandwidth BYTES_PER_S] [--auto-converge] [--include-storage] [--timeout SECONDS] [--json]";
        if (options.Positional.Count != 1 || options.Value("--to") is not { } to)
            throw new UsageException(usage);
        var name = options.Positional[0];
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
            Timeout = Number(options, "--timeout", 1, 86_400) is { } s ? TimeSpan.FromSeconds(s) : null,
        };
        var identity = options.Value("--identity") ?? (app.GetEnvironment("KVMPS_SSH_KEY") is { Length: > 0 } k ? k : null);
        var transport = new SshTransport(SshTransportOptions.FromEnvironment(app.GetEnvironment) with { KeyFilePath = identity });
        var json = options.Has("--json");
        var progress = json ? null : new Progress(app.Err);
        VmMoveResult result;
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
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteString("name", result.Name);
                w.WriteString("host", result.DestinationHost);
                w.WriteNumber("source_pid", result.SourcePid);
                w.WriteNumber("pid", result.DestinationPid);
                w.WriteNumber("total_ms", (long)result.Total.TotalMilliseconds);
                if (result.Downtime is { } d)
                    w.WriteNumber("downtime_ms", (long)d.TotalMilliseconds);
                w.WriteNumber("bytes_sent", result.BytesSent);
                if (moveOptions.IncludeStorage)
                {
                    w.WriteNumber("disk_bytes_sent", result.DiskBytesSent);
                    w.WriteString("retained_disks", result.RetainedDisksDirectory);
                }
                w.WriteEndObject();
            }));
        else
            app.Out.WriteLine($"VM '{result.Name}' moved to host '{result.DestinationHost}' (kvmps-vmm pid {result.DestinationPid} there): " +
                $"total {result.Total.TotalMilliseconds:0} ms{(result.Downtime is { } dt ? $", downtime {dt.TotalMilliseconds:0} ms" : "")}, {result.BytesSent} bytes" +
                (moveOptions.IncludeStorage ? $" ({result.DiskBytesSent} of them disk data); the disk images stay on this host{(result.RetainedDisksDirectory is { } kept ? $" (the store's in {kept})" : "")}." : "."));
        return ExitCodes.Ok;
    }

    /// <summary>
    /// Hidden: the destination's end of a move, run by the source through ssh. Reads the VM definition (one base64
    /// line) on stdin, prints <c>listening SOCKET</c> once its receiving VMM waits, then <c>running PID</c> once the VM
    /// runs here. Input ending (or an <c>abort</c> line) before that removes the VM again.
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
        var incoming = app.Manager.PrepareIncoming(definition, TimeSpan.FromSeconds(30), storageBytes);
        app.Out.WriteLine("listening " + incoming.SocketPath);
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

    private static long? Number(ParsedArgs options, string option, long min, long max)
    {
        if (options.Value(option) is not { } text)
            return null;
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < min || n > max)
            throw new UsageException($"vm migrate: {option} '{text}' is not a number from {min} to {max}");
        return n;
    }

    /// <summary>Progress lines on stderr, one per change of step.</summary>
    private sealed class Progress(TextWriter err) : IProgress<OperationProgress>
    {
        private string? _last;

        public void Report(OperationProgress value)
        {
            var phase = value.Status.Split(':')[0];
            if (phase == _last)
                return;
            _last = phase;
            err.WriteLine($"kvmps: {value.Status}");
            err.Flush();
        }
    }
}
