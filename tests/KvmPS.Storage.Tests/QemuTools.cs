using System.Diagnostics;

namespace KvmPS.Storage.Tests;

/// <summary>Locates and runs qemu-img / qemu-io for interop tests.</summary>
public static class QemuTools
{
    public static readonly string? QemuImg = FindOnPath("qemu-img");
    public static readonly string? QemuIo = FindOnPath("qemu-io");

    public static string? FindOnPath(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
    }

    public static Result Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{tool} {string.Join(' ', args)} timed out");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    public static Result Img(params string[] args) => Run(QemuImg!, args);

    public static Result Io(params string[] args) => Run(QemuIo!, args);

    /// <summary>qemu-img check must find no corruption; leaks (exit 3) are tolerated when allowed.</summary>
    public static Result AssertCheckClean(string image, bool allowLeaks = false)
    {
        var r = Img("check", "-f", "qcow2", image);
        bool ok = r.ExitCode == 0 || (allowLeaks && r.ExitCode == 3);
        Xunit.Assert.True(ok && !r.Stdout.Contains("ERROR") && !r.Stderr.Contains("ERROR"),
            $"qemu-img check {image}: {r}");
        return r;
    }
}

/// <summary>A fact that is skipped when qemu-img is not installed.</summary>
public sealed class QemuImgFactAttribute : FactAttribute
{
    public QemuImgFactAttribute()
    {
        if (QemuTools.QemuImg is null)
        {
            Skip = "qemu-img not found on PATH (install the qemu-utils package to run qemu interop tests).";
        }
    }
}

/// <summary>A fact that is skipped when qemu-img or qemu-io is not installed.</summary>
public sealed class QemuIoFactAttribute : FactAttribute
{
    public QemuIoFactAttribute()
    {
        if (QemuTools.QemuImg is null || QemuTools.QemuIo is null)
        {
            Skip = "qemu-img/qemu-io not found on PATH (install the qemu-utils package to run qemu interop tests).";
        }
    }
}
