using System.Diagnostics;
using KvmPS.Management.Manifests;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>
/// The real kvmps process given a manifest nested 10,000 levels deep exits with the manifest-error code and a message
/// naming the file. Regression: it died of a stack overflow (exit 134, SIGABRT) with no message.
/// </summary>
public sealed class DeepManifestProcessTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("@{a=", "}")]
    [InlineData("@(", ")")]
    [InlineData("(", ")")]
    public void Plan_rejects_a_manifest_nested_ten_thousand_levels_deep(string opener, string closer)
    {
        var path = Path.Combine(_dir.Path, "deep.psd1");
        File.WriteAllText(path, "@{ VirtualMachines = " + string.Concat(Enumerable.Repeat(opener, 10_000)) + "1" + string.Concat(Enumerable.Repeat(closer, 10_000)) + " }");

        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add("exec");
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "kvmps.dll"));
        info.ArgumentList.Add("plan");
        info.ArgumentList.Add(path);
        info.Environment["KVMPS_HOME"] = Path.Combine(_dir.Path, "home");
        info.Environment["DOTNET_ROLL_FORWARD"] = "Major";
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(60_000), "kvmps plan did not finish");

        Assert.True(process.ExitCode == ExitCodes.ManifestError, $"exit {process.ExitCode}; stderr: {stderr.Result}");
        Assert.Contains($"{path}:1:", stderr.Result);
        Assert.Contains($"{PsdReader.MaxNestingDepth}", stderr.Result);
        Assert.Empty(stdout.Result);
    }
}
