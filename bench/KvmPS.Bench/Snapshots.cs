using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace KvmPS.Bench;

/// <summary>
/// Figures 8: snapshots against QEMU's migration to a file, on the same idle built-in guest (at its prompt, 1 vCPU).
/// kvmps-vmm: control request <c>snapshot.create</c>, and <c>kvmps-vmm --restore DIR</c>. QEMU 7.2 (no <c>file:</c>
/// migration URI before 8.2): QMP <c>stop</c> + <c>migrate</c> to <c>exec:cat &gt; FILE</c>, and
/// <c>-incoming "exec:cat FILE"</c> + <c>cont</c>. "Running" is proven the same way on both: once the control socket
/// reports the VM running, one character is typed on the console; the guest's echo of it is the end of the sample.
/// </summary>
public static class Snapshots
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private const string Echo = "x";

    public const string Method = "8. the built-in guest idle at its prompt, 1 vCPU, `-M microvm` for QEMU. 8a/8b: kvmps-vmm: control `snapshot.create` (`resume: true`, `disks: ignore`) sent → its reply read (each sample into a fresh directory; the note gives the reply's own `duration_ms` / `paused_ms` medians); QEMU 7.2 (Debian; `file:` URIs came in 8.2): QMP `stop`, then `migrate` to `exec:cat > FILE` (not fsynced, while kvmps-vmm fsyncs its three files; after `migrate-set-parameters max-bandwidth` 1 TiB/s), polled with `query-migrate` every 1 ms until `completed`, timed from `stop` sent. 8c/8d: exec of `kvmps-vmm --restore DIR` / of QEMU with `-incoming \"exec:cat FILE\"`, each from what it wrote in 8a/8b (page cache warm; interleaved, first pair not counted) → the control socket is polled every 1 ms until the VM runs (kvmps: `status` is `Running`, its vCPU threads are in `KVM_RUN`; QEMU: `query-status` leaves `inmigrate`, then `cont` is sent, as the source was stopped, and its reply read): the issue's restore-to-first-guest-instruction time, the end of an 8c/8d sample. 8f/8g go on from there: one character typed on the console → its echo read back, the guest proven to run and take interrupts again. 8e: after the echo, the process's total RSS (`VmRSS`): kvmps maps `memory.bin` `MAP_PRIVATE` and reads pages as the guest touches them, QEMU has copied every non-zero page into its RAM.";

    public static IEnumerable<FigureResult> Measure(string vmm, string qemu, string guest, string work, int runs, ISet<string> figures)
    {
        var results = new List<FigureResult>();
        var rssK = new List<double>(); var rssQ = new List<double>();
        foreach (var (mib, createId, restoreId, echoId) in new[] { (256, "8a", "8c", "8f"), (2048, "8b", "8d", "8g") })
        {
            bool wantCreate = figures.Contains(createId);
            bool wantRestore = figures.Contains(restoreId) || figures.Contains(echoId) || (mib == 256 && figures.Contains("8e"));
            if (!wantCreate && !wantRestore) continue;
            string kDir = Path.Combine(work, $"snap-k-{mib}"), qFile = Path.Combine(work, $"snap-q-{mib}.mig");
            Console.Error.WriteLine($"figure {createId}: snapshot create, {mib} MiB");
            var (kCreate, durations, paused) = CreateKvmps(vmm, mib, kDir, wantCreate ? runs : 0);
            var qCreate = CreateQemu(qemu, guest, mib, qFile, wantCreate ? runs : 0);
            if (wantCreate)
                results.Add(new(createId, $"Snapshot create: request → reply, idle guest, {mib} MiB", "ms", Stats.Of(kCreate),
                    "QEMU stop + migrate to exec:cat > FILE", Stats.Of(qCreate), "—",
                    $"kvmps reply: duration_ms {Stats.Of(durations).Median:F0}, paused_ms {Stats.Of(paused).Median:F0}; kvmps {Mib(DirBytes(kDir))} on disk, QEMU {Mib(new FileInfo(qFile).Length)}"));
            if (!wantRestore) continue;
            Console.Error.WriteLine($"figure {restoreId}: restore to running, {mib} MiB");
            var k = new List<double>(); var q = new List<double>(); var selfK = new List<double>();
            var kEcho = new List<double>(); var qEcho = new List<double>();
            for (int i = 0; i <= runs; i++)
            {
                // Interleaved, so a change in host load hits both VMMs alike; the first pair warms up and is not counted.
                var (km, kEchoMs, kr, self) = RestoreKvmps(vmm, kDir, work);
                var (qm, qEchoMs, qr) = RestoreQemu(qemu, guest, mib, qFile, work);
                if (i == 0) continue;
                k.Add(km); q.Add(qm);
                kEcho.Add(kEchoMs); qEcho.Add(qEchoMs);
                if (!double.IsNaN(self)) selfK.Add(self);
                if (mib == 256) { rssK.Add(kr); rssQ.Add(qr); }
            }
            if (figures.Contains(restoreId))
                results.Add(new(restoreId, $"Restore to running: exec → the VMM reports the vCPUs running, idle guest, {mib} MiB", "ms", Stats.Of(k),
                    "QEMU -incoming exec:cat FILE + cont", Stats.Of(q), mib == 256 ? "≤ 20 ms and ≤ 1/5 of QEMU" : "≤ 1/5 of QEMU",
                    selfK.Count > 0 ? $"kvmps-vmm's own log: running {Stats.Of(selfK).Median:F1} ms after its Main began" : null));
            if (figures.Contains(echoId))
                results.Add(new(echoId, $"Restore to a guest that answers: exec → running → console echo, idle guest, {mib} MiB", "ms", Stats.Of(kEcho),
                    "QEMU -incoming exec:cat FILE + cont", Stats.Of(qEcho), "—"));
        }
        if (figures.Contains("8e") && rssK.Count > 0)
            results.Add(new("8e", "VMM RSS after restore (total VmRSS), 256 MiB", "MiB", Stats.Of(rssK), "QEMU after incoming migration", Stats.Of(rssQ), "lower is better"));
        return results;
    }

    private static string Mib(long bytes) => $"{bytes / 1048576.0:F1} MiB";

    /// <summary>Allocated bytes of a snapshot directory (memory.bin is sparse: holes for zero pages).</summary>
    private static long DirBytes(string dir)
    {
        long total = 0;
        foreach (var f in Directory.GetFiles(dir))
        {
            var psi = new ProcessStartInfo("du", ["-B1", "-s", f]) { RedirectStandardOutput = true };
            using var p = Process.Start(psi)!;
            total += long.Parse(p.StandardOutput.ReadToEnd().Split('\t')[0], CultureInfo.InvariantCulture);
            p.WaitForExit();
        }
        return total;
    }

    /// <summary>
    /// One VM, <paramref name="runs"/> + 1 snapshots into fresh directories (the first one not counted); the last one is
    /// kept at <paramref name="keep"/> for the restore figures.
    /// </summary>
    private static (List<double> Ms, List<double> DurationMs, List<double> PausedMs) CreateKvmps(string vmm, int mib, string keep, int runs)
    {
        string sock = Path.Combine(Path.GetDirectoryName(keep)!, $"c{mib}.sock");
        var clock = Stopwatch.StartNew();
        var p = Host.Start(vmm, ["--vcpus", "1", "--memory", $"{mib}M", "--cmdline", "", "--control-socket", sock]);
        var ms = new List<double>(); var durations = new List<double>(); var paused = new List<double>();
        try
        {
            Host.WaitForOutput(p, "> ", clock, Timeout);
            Thread.Sleep(200);
            using var control = new LineClient(sock, Timeout);
            for (int i = 0; i <= runs; i++)
            {
                string dir = i == runs ? keep : keep + $".{i}";
                if (Directory.Exists(dir)) Directory.Delete(dir, true);
                var sw = Stopwatch.StartNew();
                using var reply = control.Request(JsonSerializer.Serialize(new { request = "snapshot.create", path = dir, resume = true, disks = "ignore" }));
                double elapsed = sw.Elapsed.TotalMilliseconds;
                if (!reply.RootElement.GetProperty("ok").GetBoolean()) throw new InvalidOperationException($"snapshot.create failed: {reply.RootElement}");
                var result = reply.RootElement.GetProperty("result");
                if (i > 0)
                {
                    ms.Add(elapsed);
                    durations.Add(result.GetProperty("duration_ms").GetDouble());
                    paused.Add(result.GetProperty("paused_ms").GetDouble());
                }
                if (dir != keep) Directory.Delete(dir, true);
            }
            return (ms, durations, paused);
        }
        finally { Host.Kill(p); File.Delete(sock); }
    }

    private static List<double> CreateQemu(string qemu, string guest, int mib, string keep, int runs)
    {
        var ms = new List<double>();
        for (int i = 0; i <= runs; i++)
        {
            // A stopped QEMU cannot migrate twice cleanly, so every sample is a fresh VM.
            string sock = Path.Combine(Path.GetDirectoryName(keep)!, $"q{mib}.sock");
            var clock = Stopwatch.StartNew();
            var p = Host.Start(qemu, [.. QemuArgs(guest, mib), "-qmp", $"unix:{sock},server=on,wait=off"]);
            try
            {
                Host.WaitForOutput(p, "> ", clock, Timeout);
                Thread.Sleep(200);
                using var qmp = Qmp.Connect(sock, Timeout);
                qmp.Execute("migrate-set-parameters", new Dictionary<string, object> { ["max-bandwidth"] = 1L << 40 }).Dispose();
                if (File.Exists(keep)) File.Delete(keep);
                var sw = Stopwatch.StartNew();
                qmp.Execute("stop").Dispose();
                qmp.Execute("migrate", new { uri = $"exec:cat > {keep}" }).Dispose();
                while (true)
                {
                    using var status = qmp.Execute("query-migrate");
                    string s = status.RootElement.GetProperty("return").TryGetProperty("status", out var st) ? st.GetString()! : "none";
                    if (s == "completed") break;
                    if (s is "failed" or "cancelled") throw new InvalidOperationException($"QEMU migration {s}: {status.RootElement}");
                    if (sw.Elapsed > Timeout) throw new TimeoutException("QEMU migration did not complete");
                    Thread.Sleep(1);
                }
                if (i > 0) ms.Add(sw.Elapsed.TotalMilliseconds);
            }
            finally { Host.Kill(p); File.Delete(sock); }
        }
        return ms;
    }

    private static (double RunningMs, double EchoMs, double RssMiB, double SelfReportedMs) RestoreKvmps(string vmm, string dir, string work)
    {
        string sock = Path.Combine(work, "rk.sock");
        File.Delete(sock);
        var clock = Stopwatch.StartNew();
        var p = Host.Start(vmm, ["--restore", dir, "--control-socket", sock]);
        double selfReportedMs = double.NaN;
        p.ErrorDataReceived += (_, e) =>
        {
            // "kvmps-vmm: restored DIR (memory mapped); running N ms after exec": the VMM's own view, for the note.
            var m = System.Text.RegularExpressions.Regex.Match(e.Data ?? "", @"running (\d+(?:\.\d+)?) ms after exec");
            if (m.Success) selfReportedMs = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
        };
        try
        {
            using var control = LineClient.WaitFor(sock, clock, Timeout);
            while (true)
            {
                using var status = control.Request("{\"request\":\"status\"}");
                if (status.RootElement.GetProperty("result").GetProperty("state").GetString() == "Running") break;
                if (clock.Elapsed > Timeout) throw new TimeoutException("restored kvmps-vmm did not report Running");
                Thread.Sleep(1);
            }
            double runningMs = clock.Elapsed.TotalMilliseconds;
            double echoMs = TypeAndReadEcho(p, clock);
            return (runningMs, echoMs, VmRssMiB(p.Id), selfReportedMs);
        }
        finally { Host.Kill(p); File.Delete(sock); }
    }

    private static (double RunningMs, double EchoMs, double RssMiB) RestoreQemu(string qemu, string guest, int mib, string file, string work)
    {
        string sock = Path.Combine(work, "rq.sock");
        File.Delete(sock);
        var clock = Stopwatch.StartNew();
        var p = Host.Start(qemu, [.. QemuArgs(guest, mib), "-qmp", $"unix:{sock},server=on,wait=off", "-incoming", $"exec:cat {file}"]);
        try
        {
            using var qmp = Qmp.WaitFor(sock, clock, Timeout);
            while (true)
            {
                using var status = qmp.Execute("query-status");
                string s = status.RootElement.GetProperty("return").GetProperty("status").GetString()!;
                if (s == "running") break;
                if (s != "inmigrate") { qmp.Execute("cont").Dispose(); break; } // cont's reply: the vCPUs run again
                if (clock.Elapsed > Timeout) throw new TimeoutException("QEMU incoming migration did not finish");
                Thread.Sleep(1);
            }
            double runningMs = clock.Elapsed.TotalMilliseconds;
            double echoMs = TypeAndReadEcho(p, clock);
            return (runningMs, echoMs, VmRssMiB(p.Id));
        }
        finally { Host.Kill(p); File.Delete(sock); }
    }

    internal static string[] QemuArgs(string guest, int mib, string append = "") =>
    [
        "-M", "microvm", "-accel", "kvm", "-smp", "1", "-m", mib.ToString(), "-nodefaults", "-no-user-config",
        "-display", "none", "-serial", "stdio", "-no-reboot", "-kernel", guest, "-append", append,
    ];

    /// <summary>Types one character on the guest console and returns when its echo comes back (ms since exec).</summary>
    private static double TypeAndReadEcho(Process p, Stopwatch clock)
    {
        p.StandardInput.Write(Echo);
        p.StandardInput.Flush();
        Host.WaitForOutput(p, Echo, clock, Timeout);
        return clock.Elapsed.TotalMilliseconds;
    }

    private static double VmRssMiB(int pid)
    {
        string line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line[6..].Replace("kB", "").Trim(), CultureInfo.InvariantCulture) / 1024.0;
    }
}
