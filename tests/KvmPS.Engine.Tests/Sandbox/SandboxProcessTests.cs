using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using KvmPS.Sandbox;
using Xunit;

namespace KvmPS.Engine.Tests.Sandbox;

/// <summary>The sandbox of the real kvmps-vmm (docs/confinement.md, "The VMM sandbox").</summary>
[Collection("vmm-process")]
public class SandboxProcessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>The process's threads; one that ends while it is read (a control connection's) is left out.</summary>
    private static List<(int Tid, string Name, int Seccomp, int NoNewPrivs)> Threads(int pid)
    {
        var threads = new List<(int, string, int, int)>();
        foreach (string task in Directory.GetDirectories($"/proc/{pid}/task"))
        {
            try
            {
                var status = File.ReadAllLines(Path.Combine(task, "status"));
                int Field(string name) => int.Parse(status.First(l => l.StartsWith(name + ":", StringComparison.Ordinal))[(name.Length + 1)..].Trim());
                threads.Add((int.Parse(Path.GetFileName(task)), File.ReadAllText(Path.Combine(task, "comm")).Trim(), Field("Seccomp"), Field("NoNewPrivs")));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return threads;
    }

    [Fact]
    public void EveryThreadOfARunningVmmIsFiltered()
    {
        using var dir = new TempDir();
        string disk = dir.File("disk.raw");
        using (var f = File.Create(disk)) f.SetLength(16 << 20);
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--vcpus", "2", "--serial", "none", "--control-socket", sock, "--device", "rng", "--device", "balloon,stats_interval_s=1",
            "--device", $"block,path={disk},format=raw", "--device", $"vsock,guest_cid=3,uds_path={dir.File("v.sock")}");
        using var client = new ControlClient(sock, Timeout);
        client.WaitForState("Running", Timeout);
        client.Ok("metrics");
        var threads = Threads(vmm.Pid);
        Assert.True(threads.Count >= 6, string.Join(", ", threads)); // main, runtime, console, control, I/O, vCPUs, device threads
        Assert.Contains(threads, t => t.Name.StartsWith("vcpu", StringComparison.Ordinal));
        foreach (var t in threads)
        {
            Assert.True(t.Seccomp == 2, $"thread {t.Tid} '{t.Name}': Seccomp {t.Seccomp}");
            Assert.True(t.NoNewPrivs == 1, $"thread {t.Tid} '{t.Name}': NoNewPrivs {t.NoNewPrivs}");
        }
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
        Assert.DoesNotContain("sandbox violation", vmm.Stderr);
    }

    /// <summary>
    /// The serial console on a terminal, as an admin runs kvmps-vmm by hand: reading stdin from a tty makes .NET switch
    /// the terminal's mode (TCSETS) on the console thread, which its filter once forbade (the VMM died with status 18).
    /// util-linux's <c>script</c> gives the VMM a pseudo-terminal as stdin and stdout.
    /// </summary>
    [Fact]
    public void TheSerialConsoleOnATerminalIsNotASandboxViolation()
    {
        var psi = new System.Diagnostics.ProcessStartInfo("/usr/bin/script")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var a in (string[])["-q", "-e", "-c", string.Join(" ", (string[])[VmmBinary.Executable, "--memory", "64M", .. TestJail.Options([])]), "/dev/null"])
            psi.ArgumentList.Add(a);
        using var script = System.Diagnostics.Process.Start(psi)!;
        var output = new System.Text.StringBuilder();
        script.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.Append(e.Data).Append('\n'); };
        script.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.Append(e.Data).Append('\n'); };
        script.BeginOutputReadLine();
        script.BeginErrorReadLine();
        string Output() { lock (output) return output.ToString(); }
        var deadline = DateTime.UtcNow + Timeout;
        while (!Output().Contains("ready") && !script.HasExited && DateTime.UtcNow < deadline) Thread.Sleep(50);
        // Typed on the terminal: the console thread reads it (after switching the tty's mode) and the guest powers off.
        if (!script.HasExited)
        {
            script.StandardInput.Write("poweroff\r");
            script.StandardInput.Flush();
        }
        bool exited = script.WaitForExit(Timeout);
        if (!exited) script.Kill(entireProcessTree: true);
        Assert.True(exited, $"kvmps-vmm under script did not end: {Output()}");
        script.WaitForExit();
        Assert.DoesNotContain("sandbox violation", Output());
        Assert.True(script.ExitCode == 0, $"exit {script.ExitCode}: {Output()}");
    }

    [Fact]
    public void SandboxOffLeavesThreadsUnfiltered()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--sandbox", "off", "--serial", "none", "--control-socket", sock);
        using var client = new ControlClient(sock, Timeout);
        client.WaitForState("Running", Timeout);
        Assert.All(Threads(vmm.Pid), t => Assert.Equal((0, 0), (t.Seccomp, t.NoNewPrivs)));
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
    }

    [Fact]
    public void BadSandboxValueIsAUsageError()
    {
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--sandbox", "maybe");
        Assert.Equal(VmmExitCode.UsageError, code);
        Assert.Contains("--sandbox: 'maybe' is not on or off", stderr);
    }

    [Theory]
    [InlineData("Vcpu", "vcpu0")]
    [InlineData("DeviceIo", "kvmps-io")]
    [InlineData("Control", "control-accept")]
    [InlineData("Main", "main")]
    public void AForbiddenSyscallEndsTheVmmNamingTheThreadAndTheSyscall(string role, string thread)
    {
        using var dir = new TempDir();
        using var vmm = new VmmProcess(["--serial", "none", "--device", "rng", "--control-socket", dir.File("c.sock")], redirectStdin: false,
            new Dictionary<string, string> { [VmmSandbox.SelfTestVariable] = role });
        Assert.Equal(VmmExitCode.SandboxViolation, vmm.WaitForExit(Timeout));
        Assert.Matches($@"kvmps-vmm: sandbox violation: pid {vmm.Pid}: the {role} thread '{thread}' \(tid \d+\) called getppid \(110\), which its seccomp filter forbids", vmm.Stderr);
        // Ended at once, without its clean exit: the control socket stays behind, as after any crash (a vCPU and the
        // control server run only once it exists).
        if (role is "Vcpu" or "Control") Assert.True(File.Exists(dir.File("c.sock")));
    }
}
