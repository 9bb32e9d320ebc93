using System.Globalization;
using System.Text.Json;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Management.Remote;

/// <summary>
/// A move whose source is this remote host (Move-KvmVm -HostName): <c>kvmps vm migrate --json --progress</c> runs
/// there through ssh, its progress lines are reported as they come, and its JSON result becomes a
/// <see cref="VmMoveResult"/>. The remote host reaches the destination with its own ssh setup.
/// </summary>
public sealed partial class RemoteKvmps
{
    /// <summary>What <c>kvmps vm migrate --progress</c> puts before each progress line on stderr.</summary>
    public const string ProgressPrefix = "kvmps: progress ";

    /// <summary>
    /// Moves <paramref name="name"/> from this host to <paramref name="destination"/> (as that host's ssh names it).
    /// Failures: ssh's to this host (typed <see cref="RemoteHostException"/>s), the VM not there
    /// (<see cref="RemoteCommandFailedException"/>, VM not found), the move failing or the destination refusing or
    /// unreachable from here (<see cref="VmMoveException"/> with the remote kvmps's message: the VM runs on there).
    /// </summary>
    public VmMoveResult Move(string name, string destination, VmMoveOptions options, IProgress<OperationProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var limit = options.Timeout ?? VmManager.DefaultMoveTimeout;
        var arguments = new List<string> { "vm", "migrate", "--json", "--progress", "--to", destination,
            "--timeout", ((int)Math.Ceiling(limit.TotalSeconds)).ToString(CultureInfo.InvariantCulture) };
        if (options.DowntimeMs is { } downtime)
            arguments.AddRange(["--downtime", downtime.ToString(CultureInfo.InvariantCulture)]);
        if (options.BandwidthBytesPerSecond is { } bandwidth)
            arguments.AddRange(["--bandwidth", bandwidth.ToString(CultureInfo.InvariantCulture)]);
        if (options.AutoConverge)
            arguments.Add("--auto-converge");
        if (options.IncludeStorage)
            arguments.Add("--include-storage");
        if (options.Tunnel)
            arguments.Add("--tunnel");
        if (options.MigrationAddress is { } address)
            arguments.AddRange(["--migration-address", address]);
        arguments.AddRange(["--", name]);

        var activity = $"Moving VM '{name}' from host '{Target}' to host '{destination}'";
        // Progress lines arrive on ssh's stderr reader; they are reported from this (the caller's) thread, as
        // PowerShell's Write-Progress must be.
        var reports = new System.Collections.Concurrent.ConcurrentQueue<OperationProgress>();
        using var session = SshSession.Start(transport, Target, arguments, line =>
        {
            if (line.StartsWith(ProgressPrefix, StringComparison.Ordinal) && ParseProgress(line[ProgressPrefix.Length..]) is var (percent, status))
                reports.Enqueue(new OperationProgress(activity, status, percent) { VmName = name });
        });
        var output = new System.Text.StringBuilder();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var wait = limit + TimeSpan.FromMinutes(2);
        while (clock.Elapsed < wait && !session.OutputEnded)
        {
            if (session.ReadLine(TimeSpan.FromMilliseconds(100)) is { } line)
                output.AppendLine(line);
            while (reports.TryDequeue(out var report))
                progress?.Report(report);
        }
        var code = session.WaitForExit(TimeSpan.FromSeconds(10));
        while (reports.TryDequeue(out var report))
            progress?.Report(report);
        var errors = string.Join('\n', session.StandardError.Split('\n').Where(l => !l.StartsWith(ProgressPrefix, StringComparison.Ordinal)));
        if (code != 0)
        {
            SshTransport.ThrowOnTransportFailure(new RemoteCommandResult(Target, code, "", errors), transport.Options.RemoteKvmps);
            var message = RemoteMessage(errors);
            // kvmps exit codes (docs/cli.md): 4 the move failed, 7 the destination cannot be reached from there.
            if (code is 4 or 7)
                throw new VmMoveException(name, destination, $"On host '{Target}': {message}");
            throw new RemoteCommandFailedException(Target.ToString(), code, message);
        }
        progress?.Report(new OperationProgress(activity, "Done", 100) { VmName = name, Completed = true });
        try
        {
            using var json = JsonDocument.Parse(output.ToString());
            return VmMoveResultJson.Read(json.RootElement);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new RemoteProtocolException(Target.ToString(), $"'vm migrate --json' did not print the move's result ({e.Message})");
        }
    }

    /// <summary>"PERCENT STATUS" (see <c>kvmps vm migrate --progress</c>).</summary>
    private static (int Percent, string Status)? ParseProgress(string text)
    {
        var space = text.IndexOf(' ', StringComparison.Ordinal);
        return space > 0 && int.TryParse(text[..space], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var percent)
            ? (Math.Clamp(percent, -1, 100), text[(space + 1)..])
            : null;
    }
}

/// <summary><c>kvmps vm migrate --json</c>'s result object (docs/cli.md), both ways.</summary>
public static class VmMoveResultJson
{
    public static VmMoveResult Read(JsonElement e) =>
        new(e.GetProperty("name").GetString()!, e.GetProperty("host").GetString()!, e.GetProperty("source_pid").GetInt32(), e.GetProperty("pid").GetInt32(),
            TimeSpan.FromMilliseconds(e.GetProperty("total_ms").GetInt64()),
            e.TryGetProperty("downtime_ms", out var d) ? TimeSpan.FromMilliseconds(d.GetInt64()) : null,
            e.GetProperty("bytes_sent").GetInt64())
        {
            Transport = e.TryGetProperty("transport", out var t) && t.GetString() is { } transport ? transport : VmMoveResult.TunnelTransport,
            StreamUri = e.TryGetProperty("stream_uri", out var u) ? u.GetString() : null,
            Paused = e.TryGetProperty("paused", out var p) && p.GetBoolean(),
            DiskBytesSent = e.TryGetProperty("disk_bytes_sent", out var db) ? db.GetInt64() : 0,
            RetainedDisksDirectory = e.TryGetProperty("retained_disks", out var r) ? r.GetString() : null,
        };

    public static void Write(Utf8JsonWriter w, VmMoveResult result, bool includeStorage)
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
        w.WriteString("transport", result.Transport);
        w.WriteString("stream_uri", result.StreamUri);
        w.WriteBoolean("paused", result.Paused);
        if (includeStorage)
        {
            w.WriteNumber("disk_bytes_sent", result.DiskBytesSent);
            w.WriteString("retained_disks", result.RetainedDisksDirectory);
        }
        w.WriteEndObject();
    }
}
