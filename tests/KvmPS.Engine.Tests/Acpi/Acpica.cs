using System.Diagnostics;
using System.Text.RegularExpressions;
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

    /// <summary>
    /// Runs acpiexec on <c>DSDT.dat</c> in <paramref name="dir"/> with its I/O regions backed by memory filled with
    /// <paramref name="fill"/> (<c>-fv</c>), the debugger <paramref name="commands"/> on stdin (a <c>-b</c> command line
    /// is limited to 1023 characters); fails on any AML error ACPICA reports.
    /// </summary>
    public static string Execute(string dir, int fill, IEnumerable<string> commands)
    {
        var (rc, output) = Run("acpiexec", dir, string.Join('\n', commands.Append("quit")) + "\n", "-fv", $"{fill}", "DSDT.dat");
        Assert.True(rc == 0, $"acpiexec exited {rc}:\n{output}");
        // ACPICA reports AML failures as "ACPI Error"/"ACPI Exception" or an AE_ status other than AE_OK.
        Assert.DoesNotMatch(new Regex(@"ACPI Error|ACPI Exception|ACPI Warning|\bAE_(?!OK\b)[A-Z_]+|Unexpected", RegexOptions.IgnoreCase), output);
        return output;
    }

    /// <summary>The value of each "Evaluating X ... [Integer|Buffer] = V" block of acpiexec's output, by path.</summary>
    public static Dictionary<string, string> Results(string output)
    {
        var results = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (Match m in Regex.Matches(output, @"^Evaluating (\S+)\n[^\n]*\n\s+\[(?:Integer|Buffer)\][^=\n]*=\s+(?:0000:\s+)?([0-9A-F]{16}|[0-9A-F]{2}(?: [0-9A-F]{2})*)", RegexOptions.Multiline))
            results[m.Groups[1].Value] = m.Groups[2].Value;
        return results;
    }

    /// <summary>acpiexec's notifications, sorted (it dispatches them asynchronously, so their order varies).</summary>
    public static List<(string Device, string Value)> Notifications(string output) =>
        Regex.Matches(output, @"Received a System Notify on \[(\w+)\][^\n]*Value 0x([0-9A-F]+)")
            .Select(m => (m.Groups[1].Value, m.Groups[2].Value)).Order().ToList();
}
