using System.Diagnostics;
using KvmPS.Contract;
using KvmPS.Vmm;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>
/// ACPICA's own tools (Debian's acpica-tools: <c>iasl</c>, <c>acpiexec</c>) as the reference for our tables. A missing
/// tool fails the test: set-up installs it, and a skipped check would hide broken tables.
/// </summary>
internal static class Acpica
{
    public static string Tool(string name)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string path = Path.Combine(dir, name);
            if (File.Exists(path)) return path;
        }
        Assert.Fail($"{name} is not installed (Debian package acpica-tools): run 'sudo ./build.sh setup'.");
        return null!;
    }

    /// <summary>Runs an ACPICA tool in <paramref name="workDir"/>; returns its exit code and stdout+stderr.</summary>
    public static (int ExitCode, string Output) Run(string tool, string workDir, string? stdin, params string[] args)
    {
        var psi = new ProcessStartInfo(Tool(tool))
        {
            WorkingDirectory = workDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEndAsync();
        if (stdin is not null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{tool} {string.Join(' ', args)} did not finish within 120 s");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>
    /// <c>kvmps-vmm --acpi-tables-out</c> (in-process) for a VM with <paramref name="vcpus"/> of <paramref name="maxVcpus"/>
    /// vCPUs, into a fresh directory. The KVM device is a path that does not exist: writing the tables creates no VM.
    /// </summary>
    public static string DumpTables(int vcpus, int maxVcpus, params string[] extraArgs)
    {
        string dir = Directory.CreateTempSubdirectory($"kvmps-acpi-{maxVcpus}-").FullName;
        var stderr = new StringWriter();
        int rc = VmmHost.Main(["--acpi-tables-out", dir, "--vcpus", $"{vcpus}", "--max-vcpus", $"{maxVcpus}",
            "--kvm-device", "/nonexistent/kvm", "--serial", "none", .. extraArgs], stderr);
        Assert.True(rc == VmmExitCode.Ok, $"--acpi-tables-out exited {rc}: {stderr}");
        return dir;
    }
}
