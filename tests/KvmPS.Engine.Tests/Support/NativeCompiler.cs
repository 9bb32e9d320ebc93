using System.Diagnostics;

namespace KvmPS.Engine.Tests.Support;

/// <summary>Compiles and runs small C programs with the machine's gcc (used to read the kernel headers' truth).</summary>
internal static class NativeCompiler
{
    public static string CompileAndRun(string source, string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), "kvmps-native-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        string c = Path.Combine(dir, name + ".c"), exe = Path.Combine(dir, name);
        File.WriteAllText(c, source);
        Run("gcc", $"-O0 -o {exe} {c}");
        return Run(exe, "");
    }

    public static string Run(string file, string args)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {args} exited {p.ExitCode}: {stderr}");
        return stdout;
    }
}
