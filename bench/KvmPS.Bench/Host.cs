using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace KvmPS.Bench;

/// <summary>Launching VMMs and observing them from outside: first console byte, socket readiness, CPU time, RSS.</summary>
public static class Host
{
    public static string RepoRoot { get; } = FindRepoRoot();

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "KvmPS.sln"))) dir = dir.Parent;
        return dir?.FullName ?? Directory.GetCurrentDirectory();
    }

    public static string? Which(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
        {
            string p = Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    public static Process Start(string file, IEnumerable<string> args, bool redirectStdout = true)
    {
        var p = StartQuietly(file, args, redirectStdout);
        DrainStderr(p);
        return p;
    }

    /// <summary><see cref="Start"/> without reading stderr yet (the pipe holds 64 KiB until <see cref="DrainStderr"/>).</summary>
    private static Process StartQuietly(string file, IEnumerable<string> args, bool redirectStdout = true)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = redirectStdout, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    private static void DrainStderr(Process p)
    {
        p.ErrorDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
    }

    /// <summary>
    /// Starts a VMM and returns the time from exec to its first console byte. Its stderr is read only afterwards: the
    /// asynchronous reader would run thread-pool threads in this process, on this 2-CPU host, while the VMM starts.
    /// </summary>
    public static (double Ms, Process Process) TimeToFirstByte(string file, IEnumerable<string> args)
    {
        var sw = Stopwatch.StartNew();
        var p = StartQuietly(file, args);
        var buffer = new byte[1];
        int n = p.StandardOutput.BaseStream.Read(buffer, 0, 1);
        double ms = sw.Elapsed.TotalMilliseconds;
        DrainStderr(p);
        if (n <= 0) throw new InvalidOperationException($"{Path.GetFileName(file)} printed nothing (exit {(p.WaitForExit(5000) ? p.ExitCode : -1)})");
        return (ms, p);
    }

    /// <summary>Reads stdout until <paramref name="marker"/> appears; returns the host-side time it was seen.</summary>
    public static TimeSpan WaitForOutput(Process p, string marker, Stopwatch clock, TimeSpan timeout, StringBuilder? seen = null)
    {
        seen ??= new StringBuilder();
        var stream = p.StandardOutput.BaseStream;
        var buffer = new byte[4096];
        var deadline = clock.Elapsed + timeout;
        while (clock.Elapsed < deadline)
        {
            int n = stream.Read(buffer, 0, buffer.Length);
            if (n <= 0) break;
            seen.Append(Encoding.ASCII.GetString(buffer, 0, n));
            if (seen.ToString().Contains(marker)) return clock.Elapsed;
        }
        throw new TimeoutException($"'{marker}' not seen; output: {seen}");
    }

    /// <summary>Polls a Unix socket until a connect succeeds and the server answers; returns ms since <paramref name="clock"/> started.</summary>
    public static double WaitForSocketAnswer(string path, string? request, Stopwatch clock, TimeSpan timeout)
    {
        var deadline = clock.Elapsed + timeout;
        while (clock.Elapsed < deadline)
        {
            using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                s.Connect(new UnixDomainSocketEndPoint(path));
                if (request is not null) s.Send(Encoding.ASCII.GetBytes(request + "\n"));
                var buffer = new byte[256];
                s.ReceiveTimeout = 5000;
                if (s.Receive(buffer) > 0) return clock.Elapsed.TotalMilliseconds;
            }
            catch (SocketException) { Thread.SpinWait(2000); }
        }
        throw new TimeoutException($"{path} did not answer");
    }

    /// <summary>
    /// CPU time of a process's threads so far, from /proc/PID/task/*/schedstat (ns precision). With
    /// <paramref name="excludeVcpus"/>, vCPU threads ("vcpuN" in kvmps-vmm, "CPU N/KVM" in QEMU) are left out.
    /// </summary>
    public static double CpuMs(int pid, bool excludeVcpus = false)
    {
        double ns = 0;
        try
        {
            foreach (var task in Directory.GetDirectories($"/proc/{pid}/task"))
            {
                try
                {
                    if (excludeVcpus)
                    {
                        string comm = File.ReadAllText(Path.Combine(task, "comm")).Trim();
                        if (comm.StartsWith("vcpu", StringComparison.Ordinal) || comm.StartsWith("CPU ", StringComparison.Ordinal)) continue;
                    }
                    ns += double.Parse(File.ReadAllText(Path.Combine(task, "schedstat")).Split(' ')[0]);
                }
                catch (IOException) { }
            }
        }
        catch (DirectoryNotFoundException) { }
        return ns / 1e6;
    }

    /// <summary>
    /// Memory of a process beyond its guest-RAM mapping (the largest anonymous mapping of at least
    /// <paramref name="guestBytes"/>): total RSS, and the private part (Private_Clean + Private_Dirty), i.e. what this
    /// VMM costs on its own; the rest are file pages shared with other processes (its binary, libc).
    /// </summary>
    public static (double RssMiB, double PrivateMiB) Overhead(int pid, ulong guestBytes)
    {
        var mappings = new List<(ulong Size, long Rss, long Private, bool Anonymous)>();
        ulong size = 0; bool anonymous = false; long rss = 0, priv = 0;
        void Flush() { if (size > 0) mappings.Add((size, rss, priv, anonymous)); }
        foreach (var line in File.ReadLines($"/proc/{pid}/smaps"))
        {
            int dash = line.IndexOf('-');
            if (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && dash > 0 && line.IndexOf(' ') > dash)
            {
                Flush();
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                var range = parts[0].Split('-');
                size = Convert.ToUInt64(range[1], 16) - Convert.ToUInt64(range[0], 16);
                anonymous = parts.Length < 6;
                rss = priv = 0;
            }
            else if (line.StartsWith("Rss:", StringComparison.Ordinal)) rss = Kb(line);
            else if (line.StartsWith("Private_Clean:", StringComparison.Ordinal) || line.StartsWith("Private_Dirty:", StringComparison.Ordinal)) priv += Kb(line);
        }
        Flush();
        var guest = mappings.Where(m => m.Anonymous && m.Size >= guestBytes).OrderByDescending(m => m.Rss).FirstOrDefault();
        return ((mappings.Sum(m => m.Rss) - guest.Rss) / 1024.0, (mappings.Sum(m => m.Private) - guest.Private) / 1024.0);
        static long Kb(string line) => long.Parse(line[(line.IndexOf(':') + 1)..].Replace("kB", "").Trim());
    }

    public static void Kill(Process p)
    {
        try { if (!p.HasExited) { p.Kill(); p.WaitForExit(5000); } } catch { }
        p.Dispose();
    }

    public static string HostDescription()
    {
        string cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "unknown CPU";
        string mem = File.ReadLines("/proc/meminfo").First().Split(':', 2)[1].Trim();
        string kernel = File.ReadAllText("/proc/sys/kernel/osrelease").Trim();
        bool pvm = Directory.Exists("/sys/module/kvm_pvm");
        return $"{Environment.ProcessorCount} vCPUs ({cpu}), {mem} RAM, Linux {kernel}; KVM {(pvm ? "nested through PVM (guest CPL0 code is emulated one instruction at a time, which inflates guest-side time equally for both VMMs)" : "native")}";
    }
}
