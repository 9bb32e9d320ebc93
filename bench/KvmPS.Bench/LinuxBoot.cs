using System.Diagnostics;
using System.Text;

namespace KvmPS.Bench;

/// <summary>
/// Figure 7: a real Linux (the RealLinux test guest of tools/linux-guest: kernel, initramfs and command line) from exec
/// to its test agent's "ready" line, on kvmps-vmm and on QEMU with the same files. Boots take a minute or more on
/// the nested test host (guest CPL0 is emulated), so this figure takes at most 3 runs.
/// </summary>
public static class LinuxBoot
{
    private const string Ready = "@agent 0 ready";
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(20);

    public static IEnumerable<FigureResult> Measure(string vmm, string qemu, int runs)
    {
        var (kernel, initramfs, problem) = Images();
        if (problem is not null)
        {
            yield return new("7", "Real Linux boot to its test agent", "s", null, "QEMU -M pc", null, "—", $"not measured: {problem}");
            yield break;
        }
        string cmdline = File.ReadAllText(Path.Combine(Host.RepoRoot, "tools", "linux-guest", "cmdline")).Trim();
        runs = Math.Min(runs, 3);
        foreach (int vcpus in new[] { 1, 2 })
        {
            string[] k = ["--kernel", kernel!, "--initrd", initramfs!, "--cmdline", cmdline, "--memory", "256M", "--vcpus", vcpus.ToString()];
            // -arch-capabilities: QEMU's "host" model writes MSR 0x10a, which the nested test host's KVM refuses.
            string[] q = ["-M", "pc", "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-smp", vcpus.ToString(), "-m", "256M",
                "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
                "-kernel", kernel!, "-initrd", initramfs!, "-append", cmdline];
            var kvmps = new List<double>(); var peer = new List<double>();
            for (int i = 0; i < runs; i++)
            {
                // Interleaved, so a change in host load hits both VMMs alike.
                Console.Error.WriteLine($"figure 7: Linux with {vcpus} vCPU(s), run {i + 1} of {runs}");
                kvmps.Add(SecondsToReady(vmm, k));
                peer.Add(SecondsToReady(qemu, q));
            }
            yield return new(vcpus == 1 ? "7" : "7b", $"Real Linux 6.1 boot: exec → test agent ready, {vcpus} vCPU(s), 256 MiB", "s",
                Stats.Of(kvmps), "QEMU -M pc", Stats.Of(peer), "≤ QEMU");
        }
    }

    private static double SecondsToReady(string file, string[] args)
    {
        var clock = Stopwatch.StartNew();
        var p = Host.Start(file, args);
        try { return Host.WaitForOutput(p, Ready, clock, Timeout, new StringBuilder()).TotalSeconds; }
        finally { Host.Kill(p); }
    }

    /// <summary>The cached images from tools/linux-guest (built on first use, minutes when cold).</summary>
    private static (string? Kernel, string? Initramfs, string? Problem) Images()
    {
        string? Run(string script, out string? error)
        {
            var psi = new ProcessStartInfo(Path.Combine(Host.RepoRoot, "tools", "linux-guest", script))
                { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            string stdout = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            error = p.ExitCode == 0 && File.Exists(stdout) ? null : $"{script} failed: {stderr.Result.Trim().Split('\n').LastOrDefault()}";
            return error is null ? stdout : null;
        }
        string? kernel = Run("build-kernel.sh", out var e1);
        if (e1 is not null) return (null, null, e1);
        string? initramfs = Run("build-initramfs.sh", out var e2);
        return (kernel, initramfs, e2);
    }
}
