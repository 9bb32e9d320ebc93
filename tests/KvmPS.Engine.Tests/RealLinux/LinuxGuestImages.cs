using System.Diagnostics;
using KvmPS.Engine.Tests.Support;

namespace KvmPS.Engine.Tests.RealLinux;

/// <summary>
/// The RealLinux guest: the test kernel and initramfs built by <c>tools/linux-guest</c> (cached by a hash of their
/// inputs, so after <c>./build.sh test</c> this costs nothing), or the files named by <c>KVMPS_TEST_VMLINUX</c> and
/// <c>KVMPS_TEST_INITRAMFS</c>. A build that fails is an error carrying the build's own output and log tail: the
/// tests fail with it, they never skip.
/// </summary>
internal static class LinuxGuestImages
{
    private static readonly Lazy<(string Kernel, string Initramfs)> Built = new(Build);

    public static string Kernel => Built.Value.Kernel;
    public static string Initramfs => Built.Value.Initramfs;

    private static (string, string) Build() =>
        (Locate("KVMPS_TEST_VMLINUX", "build-kernel.sh"), Locate("KVMPS_TEST_INITRAMFS", "build-initramfs.sh"));

    private static string Locate(string variable, string script)
    {
        if (Environment.GetEnvironmentVariable(variable) is { Length: > 0 } named)
            return File.Exists(named) ? named : throw new FileNotFoundException($"{variable} names {named}, which does not exist.");
        string path = Path.Combine(VmmBinary.RepoRoot, "tools", "linux-guest", script);
        var psi = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {path}");
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        // A cold kernel build takes minutes (docs/testing.md); ./build.sh test does it before the tests run.
        if (!p.WaitForExit(TimeSpan.FromMinutes(60)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{path} did not finish within 60 minutes.\n{stderr.Result}");
        }
        string result = stdout.Trim();
        if (p.ExitCode != 0 || !File.Exists(result))
            throw new InvalidOperationException($"{path} failed (exit {p.ExitCode}); the RealLinux guest is missing.\n{stderr.Result}\n{stdout}");
        return result;
    }
}
