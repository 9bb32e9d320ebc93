using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using KvmPS.Engine.Tests.Support;

namespace KvmPS.Engine.Tests.RealLinux;

/// <summary>
/// The RealLinux test kernel running on kvmps-vmm, driven through its agent (<c>tools/linux-guest/initramfs/init</c>)
/// on the serial console: a request is <c>&lt;id&gt; &lt;command&gt; [args]</c> on the VMM's stdin, every reply line
/// is <c>@agent &lt;id&gt; …</c> on its stdout and the last is <c>@agent &lt;id&gt; done rc=&lt;n&gt;</c>.
/// </summary>
internal sealed partial class LinuxGuest : IDisposable
{
    /// <summary>
    /// What the nested test host cannot run at CPL0 is masked here (docs/testing.md): no paravirt hypercalls, no
    /// XSAVE, and the CPUID features whose instructions stop the VM.
    /// </summary>
    /// <remarks>Kept in <c>tools/linux-guest/cmdline</c>, which the benchmark's Linux figure boots with too.</remarks>
    public static readonly string Cmdline = File.ReadAllText(Path.Combine(VmmBinary.RepoRoot, "tools", "linux-guest", "cmdline")).Trim();

    // About 1 minute on an idle 2-core nested host, 5 and more when it is shared: generous, a hung boot is still caught.
    public static readonly TimeSpan BootTimeout = TimeSpan.FromMinutes(12);
    /// <summary>One agent command: a few fork+execs and slow console output, minutes when the host is shared.</summary>
    public static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(5);

    private readonly Process _vmm;
    private readonly StringBuilder _stdout = new(), _stderr = new();
    private int _nextId = 1;

    public TempDir Dir { get; }
    public string ControlSocket { get; }
    public TimeSpan BootTime { get; private set; }
    /// <summary>The guest's own uptime when the agent started (seconds, /proc/uptime).</summary>
    public double GuestUptimeAtReady { get; private set; }

    /// <summary>Boots the test kernel and waits for the agent's ready line on the serial console.</summary>
    /// <param name="netns">run kvmps-vmm inside this network namespace (<c>ip netns exec</c>), or null</param>
    public LinuxGuest(TempDir dir, int vcpus, string memory, string? netns, params string[] extraArgs)
        : this(dir, "c.sock", netns, waitForReady: true,
            ["--kernel", LinuxGuestImages.Kernel, "--initrd", LinuxGuestImages.Initramfs, "--cmdline", Cmdline,
             "--memory", memory, "--vcpus", vcpus.ToString(CultureInfo.InvariantCulture), .. extraArgs])
    {
    }

    private LinuxGuest(TempDir dir, string controlSocketName, string? netns, bool waitForReady, string[] machineArgs)
    {
        Dir = dir;
        ControlSocket = dir.File(controlSocketName);
        string[] args = [.. machineArgs, "--serial", "stdio", "--control-socket", ControlSocket, "--on-crash", "exit"];
        var sw = Stopwatch.StartNew();
        var psi = new ProcessStartInfo(netns is null ? VmmBinary.Executable : "ip")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        if (netns is not null) foreach (var a in (string[])["netns", "exec", netns, VmmBinary.Executable]) psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        _vmm = new Process { StartInfo = psi };
        _vmm.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_stdout) _stdout.Append(e.Data).Append('\n'); };
        _vmm.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_stderr) _stderr.Append(e.Data).Append('\n'); };
        _vmm.Start();
        _vmm.BeginOutputReadLine();
        _vmm.BeginErrorReadLine();
        if (!waitForReady) return;
        var ready = WaitForLine(ReadyPattern(), BootTimeout);
        if (ready is null)
        {
            string why = _vmm.HasExited
                ? $"kvmps-vmm ended before Linux reached the test agent.\n{Diagnostics()}"
                : $"Linux did not reach the test agent within {BootTimeout}.\n{Diagnostics()}";
            Dispose();
            throw new InvalidOperationException(why);
        }
        BootTime = sw.Elapsed;
        GuestUptimeAtReady = double.Parse(ready.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// <c>kvmps-vmm --restore <paramref name="snapshot"/></c> in a new process (control socket <c>r.sock</c>, the
    /// serial console on stdio as for a boot). The restored agent does not announce itself again: it is inside the
    /// read of its next request, so the first <see cref="Run"/> is the check that it answers.
    /// </summary>
    public static LinuxGuest Restore(TempDir dir, string snapshot, string? netns, params string[] extraArgs)
    {
        var guest = new LinuxGuest(dir, "r.sock", netns, waitForReady: false, ["--restore", snapshot, .. extraArgs]);
        // Request IDs of the restored agent are told apart from the snapshotted process's in logs.
        guest._nextId = 1000;
        return guest;
    }

    /// <summary>
    /// <c>kvmps-vmm --incoming <paramref name="uri"/></c> in a new process (control socket <c>d.sock</c>, the serial
    /// console on stdio): the destination of a live migration, configured like the source (<paramref name="vcpus"/>,
    /// <paramref name="memory"/>, <paramref name="extraArgs"/>). Like a restored agent, the migrated one does not
    /// announce itself: the first <see cref="Run"/> is the check that it answers here.
    /// </summary>
    public static LinuxGuest Incoming(TempDir dir, string uri, int vcpus, string memory, string? netns, params string[] extraArgs)
    {
        var guest = new LinuxGuest(dir, "d.sock", netns, waitForReady: false,
            ["--kernel", LinuxGuestImages.Kernel, "--initrd", LinuxGuestImages.Initramfs, "--cmdline", Cmdline,
             "--memory", memory, "--vcpus", vcpus.ToString(CultureInfo.InvariantCulture), .. extraArgs, "--incoming", uri]);
        guest._nextId = 2000;
        return guest;
    }

    /// <summary>The process ID of kvmps-vmm (of <c>ip netns exec</c>, which execs it, in a namespace).</summary>
    public int Pid => _vmm.Id;

    /// <summary>SIGKILL to kvmps-vmm: nothing of it runs on, as when a host loses the process.</summary>
    public void Kill()
    {
        _vmm.Kill();
        _vmm.WaitForExit();
    }

    [GeneratedRegex(@"@agent 0 ready uptime=([0-9.]+)")]
    private static partial Regex ReadyPattern();

    public string Serial { get { lock (_stdout) return _stdout.ToString(); } }
    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }
    public bool HasExited => _vmm.HasExited;

    /// <summary>Runs one agent command; returns the reply lines (without the <c>@agent id</c> prefix and the done line).</summary>
    public IReadOnlyList<string> Run(string command, TimeSpan? timeout = null, int expectRc = 0)
    {
        var (rc, lines) = RunForRc(command, timeout);
        if (rc != expectRc)
            throw new InvalidOperationException($"agent command '{command}' ended with rc={rc}:\n{string.Join('\n', lines)}\n{Diagnostics()}");
        return lines;
    }

    /// <summary>Runs one agent command whatever its exit status; returns the status and the reply lines.</summary>
    public (int Rc, IReadOnlyList<string> Lines) RunForRc(string command, TimeSpan? timeout = null)
    {
        int id = _nextId++;
        _vmm.StandardInput.Write($"{id} {command}\n");
        _vmm.StandardInput.Flush();
        var done = WaitForLine(new Regex($@"@agent {id} done rc=(\d+)"), timeout ?? CommandTimeout)
            ?? throw new InvalidOperationException($"the agent did not answer '{command}'.\n{Diagnostics()}");
        var prefix = $"@agent {id} ";
        var lines = Serial.Split('\n')
            .Select(l => l.TrimEnd('\r'))
            .Select(l => l.IndexOf(prefix, StringComparison.Ordinal) is var i and >= 0 ? l[(i + prefix.Length)..] : null)
            .Where(l => l is not null && !l.StartsWith("done rc=", StringComparison.Ordinal))
            .Select(l => l!)
            .ToList();
        return (int.Parse(done.Groups[1].Value, CultureInfo.InvariantCulture), lines);
    }

    /// <summary>
    /// The agent over vsock (<see cref="VsockAgent"/>) through the vsock device's <paramref name="udsPath"/>; its
    /// server starts with the console agent, so a short wait covers it.
    /// </summary>
    public VsockAgent ConnectVsockAgent(string udsPath) => VsockAgent.Connect(udsPath, TimeSpan.FromMinutes(3), Diagnostics);

    /// <summary>The single reply line that starts with <paramref name="key"/>, as key=value pairs.</summary>
    public static Dictionary<string, string> Fields(IEnumerable<string> lines, string key)
    {
        string line = lines.SingleOrDefault(l => l.StartsWith(key + " ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"no '{key}' line in the reply:\n{string.Join('\n', lines)}");
        return line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(kv => kv.Split('=', 2)).Where(kv => kv.Length == 2)
            .ToDictionary(kv => kv[0], kv => kv[1]);
    }

    public Match? WaitForLine(Regex pattern, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var m = pattern.Match(Serial);
            if (m.Success) return m;
            if (_vmm.HasExited)
            {
                // Its last lines (a poweroff's answer) may still be on their way to the output handler: WaitForExit()
                // without a timeout returns once the redirected streams reached their end.
                _vmm.WaitForExit();
                m = pattern.Match(Serial);
                return m.Success ? m : null;
            }
            if (DateTime.UtcNow > deadline) return null;
            Thread.Sleep(100);
        }
    }

    public int WaitForExit(TimeSpan timeout)
    {
        if (!_vmm.WaitForExit(timeout)) throw new TimeoutException($"kvmps-vmm did not exit within {timeout}.\n{Diagnostics()}");
        _vmm.WaitForExit(); // drains the redirected streams
        return _vmm.ExitCode;
    }

    /// <summary>What a failure report needs: the VMM's state, its stderr and the serial tail.</summary>
    public string Diagnostics()
    {
        string state = StatusText();
        if (_vmm.HasExited)
        {
            _vmm.WaitForExit(); // drains the redirected streams
            state = $"kvmps-vmm exited with status {_vmm.ExitCode}";
        }
        return $"{state}\n--- kvmps-vmm stderr ---\n{Stderr}\n--- serial (tail) ---\n{Tail(Serial, 60)}";
    }

    private string StatusText()
    {
        try { using var c = new ControlClient(ControlSocket, TimeSpan.FromSeconds(2)); return "status: " + c.Ok("status"); }
        catch (Exception e) { return $"status unavailable: {e.Message}"; }
    }

    public static string Tail(string text, int lines) => string.Join('\n', text.Split('\n').TakeLast(lines));

    public void Dispose()
    {
        try { if (!_vmm.HasExited) { _vmm.Kill(entireProcessTree: true); _vmm.WaitForExit(10_000); } } catch (InvalidOperationException) { }
        _vmm.Dispose();
    }
}
