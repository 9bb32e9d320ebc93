using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace KvmPS.Management.Tests.TestSupport;

/// <summary>
/// Locates (or builds once) the real kvmps-vmm binary and the built-in guest ELF for lifecycle tests:
/// <c>$KVMPS_VMM</c>, else <c>&lt;repo&gt;/out/bin/kvmps-vmm</c>, else <c>dotnet publish src/kvmps-vmm</c>.
/// </summary>
public sealed class VmmFixture
{
    public VmmFixture()
    {
        RepoRoot = FindRepoRoot();
        var fromEnvironment = Environment.GetEnvironmentVariable("KVMPS_VMM");
        VmmPath = !string.IsNullOrEmpty(fromEnvironment) ? fromEnvironment : Path.Combine(RepoRoot, "out", "bin", "kvmps-vmm");
        if (!File.Exists(VmmPath))
        {
            if (!string.IsNullOrEmpty(fromEnvironment))
                throw new InvalidOperationException($"KVMPS_VMM={fromEnvironment} does not exist");
            Run("dotnet", $"publish src/kvmps-vmm -c Release -o out/bin", TimeSpan.FromMinutes(5));
            if (!File.Exists(VmmPath))
                throw new InvalidOperationException($"building kvmps-vmm did not produce {VmmPath}");
        }
        GuestElfPath = Path.Combine(RepoRoot, "guest", "build", "kvmps-guest.elf");
        if (!File.Exists(GuestElfPath))
            Run("make", "-C guest", TimeSpan.FromMinutes(2));
        if (!File.Exists("/dev/kvm"))
            throw new InvalidOperationException("/dev/kvm is missing: the lifecycle tests run real VMs");
    }

    public string RepoRoot { get; }
    public string VmmPath { get; }
    public string GuestElfPath { get; }

    private void Run(string program, string arguments, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(program, arguments)
        {
            WorkingDirectory = RepoRoot,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {arguments} took longer than {timeout}");
        }
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{program} {arguments} failed ({process.ExitCode}): {output.Result}{error.Result}");
    }

    /// <summary>From this source file's compile-time path: the tests may run from an artifacts directory outside the repo.</summary>
    private static string FindRepoRoot([CallerFilePath] string sourceFile = "")
    {
        for (var dir = new DirectoryInfo(Path.GetDirectoryName(sourceFile)!); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "KvmPS.sln")))
                return dir.FullName;
        throw new InvalidOperationException($"cannot find the repository root above {sourceFile}");
    }
}

[CollectionDefinition(Name)]
public sealed class VmmCollection : ICollectionFixture<VmmFixture>
{
    /// <summary>All tests that run real VMs share one collection: they run one at a time on a small box.</summary>
    public const string Name = "kvmps-vmm";
}
