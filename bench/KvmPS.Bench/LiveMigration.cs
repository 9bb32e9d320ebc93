using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace KvmPS.Bench;

/// <summary>
/// Figures 10: live migration against QEMU's own, the same built-in guest on both, source and destination on this
/// host over TCP loopback or across two network namespaces joined by a veth pair (<see cref="Link"/>). Downtime is
/// taken the same way for both, on the host's wall clock: the source's vCPUs stopped → the destination's vCPUs started
/// (kvmps-vmm: its two <c>migration: ...at unix time</c> log lines; QEMU: the timestamps of its QMP events STOP on the
/// source and RESUME on the destination). The figures each VMM reports itself go in the notes: kvmps-vmm's source logs
/// <c>migrated to URI: total N ms, downtime N ms</c>; QEMU's <c>query-migrate</c> gives <c>total-time</c> and
/// <c>downtime</c> once <c>completed</c>.
/// </summary>
public static partial class LiveMigration
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private const int GuestMiB = 256;
    private const int DirtyMiB = 8;
    private const int UdirtyMiB = 128, UdirtyRateMiBps = 50;
    private const int DowntimeLimitMs = 300;

    public const string Method = "10. the built-in guest, 256 MiB, 1 vCPU (`-M microvm` for QEMU), source and destination on this host, TCP on 127.0.0.1, downtime limit 300 ms on both (the default of both), no bandwidth cap (QEMU: `migrate-set-parameters max-bandwidth` 1 TiB/s; its default is 128 MiB/s). Destination started first and waiting (`kvmps-vmm --incoming tcp:`, QEMU `-incoming tcp:`); then `migrate` sent to the source (kvmps: control request; QEMU: QMP, polled with `query-migrate` every 1 ms). 10a/10c/10e/10g/10i (the same clock for both): `migrate` sent → the destination's control socket says the VM runs (kvmps: `status` `Running`; QEMU: `query-status` `running`, polled every 1 ms); each VMM's own total is in the note. 10b/10d/10f/10h/10j: downtime, the same definition for both, on the host's wall clock (both VMMs on this host, so one clock): the source's vCPUs stopped → the destination's vCPUs started. QEMU: the `timestamp` of the `STOP` event on the source's QMP (sent once its vCPUs are paused) to that of `RESUME` on the destination's QMP (sent just before its vCPUs resume; autostart, no `-S`). kvmps-vmm: its source's log line `migration: the vCPUs stopped at unix time S s` (taken once the pause returns) to its destination's `migration: the received VM started at unix time S s` (taken just before the vCPU threads start). The note gives the downtime each VMM reports itself, which they define differently: kvmps-vmm's runs from just before the pause until the source has the destination's `Running` message (one more trip over the link); QEMU's `downtime` runs from the stop until the source has sent its last byte, so the destination's loading and start are not in it (QEMU `migration_completion`; it reports 0 ms for an idle guest). Neither is guest-observed: both VMMs carry the guest's clocks over the pause, so the built-in guest cannot see its own downtime. 10a/10b: the guest idle at its prompt; the destination's guest then echoes a typed character (proof it runs). 10c/10d: the guest rewriting 8 MiB without end (`work dirty 8`) as fast as its vCPU goes; its rate, measured from its own `dirty pass` lines, is in the note (guest kernel code is emulated on this nested host, so it is far below 50 MiB/s). 10e/10f: the guest dirtying 128 MiB at 50 MiB/s from ring 3 (`work udirty 128 50`: one store per 4 KiB page, paced by the TSC; ring-3 code runs natively here); the rate is the median of its own `udirty rate` lines before the migration, in the note. 10g-10j: 10a/10b and 10e/10f with source and destination in two network namespaces joined by a veth pair (10.77.0.1 ↔ 10.77.0.2/24, MTU 1500; each VMM started with `ip netns exec`, the control sockets are files both reach). Interleaved, first pair not counted.";

    private sealed record Scenario(string TotalId, string DowntimeId, string Cmdline, string What, bool Namespaces);

    private static readonly Scenario[] Scenarios =
    [
        new("10a", "10b", "", "idle guest", false),
        new("10c", "10d", $"kvmps.run=work dirty {DirtyMiB}", $"guest rewriting {DirtyMiB} MiB", false),
        new("10e", "10f", $"kvmps.run=work udirty {UdirtyMiB} {UdirtyRateMiBps}", $"guest dirtying {UdirtyRateMiBps} MiB/s (ring 3)", false),
        new("10g", "10h", "", "idle guest", true),
        new("10i", "10j", $"kvmps.run=work udirty {UdirtyMiB} {UdirtyRateMiBps}", $"guest dirtying {UdirtyRateMiBps} MiB/s (ring 3)", true),
    ];

    public static IEnumerable<FigureResult> Measure(string vmm, string qemu, string guest, int runs, ISet<string> figures)
    {
        var results = new List<FigureResult>();
        var wanted = Scenarios.Where(sc => figures.Contains(sc.TotalId) || figures.Contains(sc.DowntimeId)).ToList();
        using var namespaces = wanted.Any(sc => sc.Namespaces) ? Link.Namespaces() : null;
        foreach (var sc in wanted)
        {
            var link = sc.Namespaces ? namespaces! : Link.Loopback;
            string where = sc.Namespaces ? "two network namespaces over a veth pair" : "TCP loopback";
            Console.Error.WriteLine($"figure {sc.TotalId}/{sc.DowntimeId}: live migration, {sc.What}, {where}");
            var kTotal = new List<double>(); var kDown = new List<double>(); var qTotal = new List<double>(); var qDown = new List<double>();
            var kSeen = new List<double>(); var qSeen = new List<double>();
            var kClock = new List<double>(); var qClock = new List<double>();
            var kPause = new List<double>(); var kConfirm = new List<double>();
            var kRate = new List<double>(); var qRate = new List<double>();
            for (int i = 0; i <= runs; i++)
            {
                var k = MigrateKvmps(vmm, sc.Cmdline, link);
                var q = MigrateQemu(qemu, guest, sc.Cmdline, link);
                if (i == 0) continue; // warm-up pair
                kTotal.Add(k.TotalMs); kDown.Add(k.DowntimeMs); qTotal.Add(q.TotalMs); qDown.Add(q.DowntimeMs);
                kSeen.Add(k.ObservedMs); qSeen.Add(q.ObservedMs);
                kClock.Add(k.SameClockDowntimeMs); qClock.Add(q.SameClockDowntimeMs);
                kPause.Add(k.PauseMs); kConfirm.Add(k.ConfirmLagMs);
                if (!double.IsNaN(k.DirtyMiBps)) kRate.Add(k.DirtyMiBps);
                if (!double.IsNaN(q.DirtyMiBps)) qRate.Add(q.DirtyMiBps);
            }
            string? rateNote = kRate.Count > 0 && qRate.Count > 0
                ? $"guest dirtying {Stats.Of(kRate).Median:F1} MiB/s on kvmps, {Stats.Of(qRate).Median:F1} MiB/s on QEMU"
                : null;
            string ownTotals = $"each VMM's own total: kvmps {Stats.Of(kTotal).Median:F0} ms, QEMU total-time {Stats.Of(qTotal).Median:F0} ms";
            string peer = sc.Namespaces ? "QEMU migrate tcp: (namespaces)" : "QEMU migrate tcp:";
            if (figures.Contains(sc.TotalId))
                results.Add(new(sc.TotalId, $"Live migration, total: migrate sent → the destination says running, {sc.What}, {GuestMiB} MiB, {where}", "ms",
                    Stats.Of(kSeen), peer, Stats.Of(qSeen), "below QEMU", rateNote is null ? ownTotals : $"{ownTotals}; {rateNote}"));
            string ownDowntimes = $"as each VMM reports it: kvmps {Stats.Of(kDown).Median:F0} ms (pause → the destination's Running message back; in it the pause {Stats.Of(kPause).Median:F1} ms, Running sent {Stats.Of(kConfirm).Median:F1} ms after the start), QEMU downtime {Stats.Of(qDown).Median:F0} ms (stop → last byte sent)";
            if (figures.Contains(sc.DowntimeId))
                results.Add(new(sc.DowntimeId, $"Live migration, downtime: source vCPUs stopped → destination vCPUs started (host clock: kvmps log lines, QEMU STOP/RESUME events), {sc.What}, {GuestMiB} MiB{(sc.Namespaces ? ", " + where : "")}", "ms",
                    Stats.Of(kClock), $"{peer} (STOP → RESUME)", Stats.Of(qClock), sc.Cmdline == "" ? "≤ 50 ms and below QEMU" : "below QEMU", rateNote is null ? ownDowntimes : $"{ownDowntimes}; {rateNote}"));
        }
        return results;
    }

    /// <param name="TotalMs">the VMM's own total</param>
    /// <param name="DowntimeMs">the VMM's own downtime (definitions differ: see Method)</param>
    /// <param name="ObservedMs">the bench's clock: migrate sent → the destination's control socket says running</param>
    /// <param name="SameClockDowntimeMs">the host's wall clock: the source's vCPUs stopped → the destination's started</param>
    /// <param name="PauseMs">kvmps-vmm: the pause until the vCPUs were out (its source's log; NaN for QEMU)</param>
    /// <param name="ConfirmLagMs">kvmps-vmm: the destination's start → its Running message sent (its log; NaN for QEMU)</param>
    private readonly record struct Sample(double TotalMs, double DowntimeMs, double ObservedMs, double DirtyMiBps, double SameClockDowntimeMs,
        double PauseMs = double.NaN, double ConfirmLagMs = double.NaN);

    private static Sample MigrateKvmps(string vmm, string cmdline, Link link)
    {
        int port = FreePort();
        string uri = $"tcp:{link.DestinationAddress}:{port}";
        string dir = Directory.CreateTempSubdirectory("kvm-mig").FullName;
        string sock = Path.Combine(dir, "src.sock"), destinationSock = Path.Combine(dir, "dst.sock");
        var destination = Capture.Start(link.Destination(vmm, ["--incoming", uri, "--memory", $"{GuestMiB}M", "--cmdline", cmdline, "--control-socket", destinationSock]));
        Capture? source = null;
        try
        {
            destination.WaitForStderr("waiting for a migration stream", Timeout);
            source = Capture.Start(link.Source(vmm, ["--memory", $"{GuestMiB}M", "--cmdline", cmdline, "--control-socket", sock]));
            double rate = WaitForGuest(source.Process, cmdline);
            using var watch = LineClient.WaitFor(destinationSock, Stopwatch.StartNew(), Timeout);
            var clock = Stopwatch.StartNew();
            using (var control = LineClient.WaitFor(sock, Stopwatch.StartNew(), Timeout))
            {
                clock.Restart();
                using var reply = control.Request(JsonSerializer.Serialize(new { request = "migrate", uri, downtime_ms = DowntimeLimitMs }));
                if (!reply.RootElement.GetProperty("ok").GetBoolean()) throw new InvalidOperationException($"kvmps migrate refused: {reply.RootElement}");
            }
            while (true)
            {
                using var status = watch.Request("{\"request\":\"status\"}");
                if (status.RootElement.GetProperty("result").GetProperty("state").GetString() == "Running") break;
                if (clock.Elapsed > Timeout) throw new TimeoutException($"the kvmps destination did not run the VM: {destination.Stderr}");
                Thread.Sleep(1);
            }
            double observedMs = clock.Elapsed.TotalMilliseconds;
            if (!source.Process.WaitForExit((int)Timeout.TotalMilliseconds)) throw new TimeoutException($"the kvmps source did not finish migrating: {source.Stderr}");
            source.Process.WaitForExit();
            if (source.Process.ExitCode != 14) throw new InvalidOperationException($"the kvmps source exited {source.Process.ExitCode}, not 14 (migrated): {source.Stderr}");
            var m = Regex.Match(source.Stderr, @"migrated to \S+: total (\d+(?:\.\d+)?) ms, downtime (\d+(?:\.\d+)?) ms");
            if (!m.Success) throw new InvalidOperationException($"no 'migrated to' line from the kvmps source: {source.Stderr}");
            var stopped = Regex.Match(source.Stderr, @"migration: the vCPUs stopped at unix time (\d+\.\d+) s \(the pause took (\d+\.\d) ms\)");
            if (!stopped.Success) throw new InvalidOperationException($"no 'vCPUs stopped at' line from the kvmps source: {source.Stderr}");
            destination.WaitForStderr("the received VM started at unix time", Timeout);
            var started = Regex.Match(destination.Stderr, @"migration: the received VM started at unix time (\d+\.\d+) s \(Running sent to the source (\d+\.\d) ms later\)");
            if (!started.Success) throw new InvalidOperationException($"no 'received VM started at' line from the kvmps destination: {destination.Stderr}");
            double clockMs = (Parse(started.Groups[1].Value) - Parse(stopped.Groups[1].Value)) * 1000;
            if (cmdline == "") ProveRuns(destination.Process);
            return new(Parse(m.Groups[1].Value), Parse(m.Groups[2].Value), observedMs, rate, clockMs, Parse(stopped.Groups[2].Value), Parse(started.Groups[2].Value));
        }
        finally
        {
            if (source is not null) Host.Kill(source.Process);
            Host.Kill(destination.Process);
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    private static Sample MigrateQemu(string qemu, string guest, string cmdline, Link link)
    {
        int port = FreePort();
        string dir = Directory.CreateTempSubdirectory("qemu-mig").FullName;
        string sock = Path.Combine(dir, "src.qmp"), destinationSock = Path.Combine(dir, "dst.qmp");
        var (dFile, dArgs) = link.Destination(qemu, [.. Snapshots.QemuArgs(guest, GuestMiB, cmdline), "-incoming", $"tcp:{link.DestinationAddress}:{port}", "-qmp", $"unix:{destinationSock},server=on,wait=off"]);
        var destination = Host.Start(dFile, dArgs);
        Process? source = null;
        try
        {
            WaitForListener(destination.Id, port, Timeout);
            var (sFile, sArgs) = link.Source(qemu, [.. Snapshots.QemuArgs(guest, GuestMiB, cmdline), "-qmp", $"unix:{sock},server=on,wait=off"]);
            source = Host.Start(sFile, sArgs);
            double rate = WaitForGuest(source, cmdline);
            using var qmp = Qmp.WaitFor(sock, Stopwatch.StartNew(), Timeout);
            using var watch = Qmp.WaitFor(destinationSock, Stopwatch.StartNew(), Timeout);
            qmp.Execute("migrate-set-parameters", new Dictionary<string, object> { ["max-bandwidth"] = 1L << 40, ["downtime-limit"] = DowntimeLimitMs }).Dispose();
            var clock = Stopwatch.StartNew();
            qmp.Execute("migrate", new Dictionary<string, object> { ["uri"] = $"tcp:{link.DestinationAddress}:{port}" }).Dispose();
            while (true)
            {
                // QEMU's destination runs the VM on its own once the stream ends (autostart, as no -S was given).
                using var status = watch.Execute("query-status");
                if (status.RootElement.GetProperty("return").GetProperty("status").GetString() == "running") break;
                if (clock.Elapsed > Timeout) throw new TimeoutException("the QEMU destination did not run the VM");
                Thread.Sleep(1);
            }
            double observedMs = clock.Elapsed.TotalMilliseconds;
            while (true)
            {
                using var status = qmp.Execute("query-migrate");
                var result = status.RootElement.GetProperty("return");
                string s = result.TryGetProperty("status", out var st) ? st.GetString()! : "none";
                if (s == "completed")
                {
                    double clockMs = (watch.WaitForEvent("RESUME") - qmp.WaitForEvent("STOP")) * 1000;
                    if (cmdline == "") ProveRuns(destination);
                    return new(result.GetProperty("total-time").GetDouble(), result.GetProperty("downtime").GetDouble(), observedMs, rate, clockMs);
                }
                if (s is "failed" or "cancelled") throw new InvalidOperationException($"QEMU migration {s}: {result}");
                if (clock.Elapsed > Timeout) throw new TimeoutException("QEMU migration did not complete");
                Thread.Sleep(1);
            }
        }
        finally
        {
            if (source is not null) Host.Kill(source);
            Host.Kill(destination);
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    /// <summary>
    /// Waits for the guest's prompt, or for its dirtying workload to be in full swing; for the workload, returns the
    /// rate it dirties at (NaN when idle): for `work dirty`, from the time between two of its pass lines; for
    /// `work udirty`, the median of the first three rates it reports (about one a second).
    /// </summary>
    private static double WaitForGuest(Process p, string cmdline)
    {
        var clock = Stopwatch.StartNew();
        var seen = new StringBuilder();
        if (cmdline == "") { Host.WaitForOutput(p, "> ", clock, Timeout, seen); Thread.Sleep(200); return double.NaN; }
        if (cmdline.Contains("udirty", StringComparison.Ordinal))
        {
            var stream = p.StandardOutput.BaseStream;
            var buffer = new byte[4096];
            while (UdirtyRate().Matches(seen.ToString()).Count < 3)
            {
                int n = stream.Read(buffer, 0, buffer.Length);
                if (n <= 0 || clock.Elapsed > Timeout) throw new TimeoutException($"the guest reported no dirtying rate: {seen}");
                seen.Append(Encoding.ASCII.GetString(buffer, 0, n));
            }
            var rates = UdirtyRate().Matches(seen.ToString()).Take(3).Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) / 1024).ToList();
            return Stats.Of(rates).Median;
        }
        var first = Host.WaitForOutput(p, "work: dirty pass 1", clock, Timeout, seen);
        var second = Host.WaitForOutput(p, "work: dirty pass 2", clock, Timeout, seen);
        return DirtyMiB / (second - first).TotalSeconds;
    }

    [GeneratedRegex(@"work: udirty rate (\d+) KiB/s")]
    private static partial Regex UdirtyRate();

    /// <summary>Types a character on the destination's console and waits for its echo: the migrated guest runs.</summary>
    private static void ProveRuns(Process destination)
    {
        destination.StandardInput.Write("x");
        destination.StandardInput.Flush();
        Host.WaitForOutput(destination, "x", Stopwatch.StartNew(), Timeout);
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// <summary>Waits until <paramref name="pid"/>'s network namespace has a listener on <paramref name="port"/>.</summary>
    private static void WaitForListener(int pid, int port, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            // QEMU accepts one connection on -incoming and migrates from it; a bare connect/close would fail that. So
            // look at the kernel's table of listening sockets instead.
            string hex = port.ToString("X4", CultureInfo.InvariantCulture);
            if (File.ReadLines($"/proc/{pid}/net/tcp").Skip(1).Any(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is var f && f[1].EndsWith(":" + hex, StringComparison.Ordinal) && f[3] == "0A"))
                return;
            if (clock.Elapsed > timeout) throw new TimeoutException($"nothing listens on port {port}");
            Thread.Sleep(2);
        }
    }

    private static double Parse(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    /// <summary>A process whose stderr is kept (the VMM's log lines).</summary>
    private sealed class Capture
    {
        private readonly StringBuilder _stderr = new();
        public required Process Process { get; init; }
        public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

        public static Capture Start((string File, IEnumerable<string> Args) command) => Start(command.File, command.Args);

        public static Capture Start(string file, IEnumerable<string> args)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
            foreach (var a in args) psi.ArgumentList.Add(a);
            var capture = new Capture { Process = new Process { StartInfo = psi } };
            capture.Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (capture._stderr) capture._stderr.AppendLine(e.Data); };
            capture.Process.Start();
            capture.Process.BeginErrorReadLine();
            return capture;
        }

        public void WaitForStderr(string text, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            while (!Stderr.Contains(text, StringComparison.Ordinal))
            {
                if (Process.HasExited) throw new InvalidOperationException($"{Path.GetFileName(Process.StartInfo.FileName)} exited {Process.ExitCode}: {Stderr}");
                if (clock.Elapsed > timeout) throw new TimeoutException($"'{text}' not seen on stderr: {Stderr}");
                Thread.Sleep(2);
            }
        }
    }
}
