using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace KvmPS.Management.Tests.TestSupport;

/// <summary>
/// A throw-away network namespace for tests whose VMMs use taps: the test body runs on a thread that joined it (setns),
/// and the VMMs it spawns inherit the thread's namespace. Deleted (with its taps and bridges) on Dispose.
/// </summary>
internal sealed class NetworkNamespace : IDisposable
{
    private const int CLONE_NEWNET = 0x40000000;

    [DllImport("libc", SetLastError = true)]
    private static extern int setns(int fd, int nstype);

    public string Name { get; }

    public NetworkNamespace(string prefix)
    {
        Name = $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 7)];
        Run("ip", "netns", "add", Name);
    }

    public static void Run(string tool, params string[] args) => Output(tool, args);

    /// <summary>Runs <paramref name="tool"/>; its standard output, or an exception with its error output when it fails.</summary>
    public static string Output(string tool, params string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(tool, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var error = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{tool} {string.Join(' ', args)}: {error.Result}");
        return output;
    }

    /// <summary>`ip -n NAME ARGS`: its output.</summary>
    public string Ip(params string[] args) => Output("ip", ["-n", Name, .. args]);

    /// <summary>Runs <paramref name="body"/> on a thread inside this namespace.</summary>
    public void Enter(Action body)
    {
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var handle = File.OpenHandle($"/var/run/netns/{Name}");
                if (setns((int)handle.DangerousGetHandle(), CLONE_NEWNET) != 0)
                    throw new InvalidOperationException($"setns({Name}) failed: errno {Marshal.GetLastPInvokeError()}");
                body();
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        });
        thread.Start();
        thread.Join();
        failure?.Throw();
    }

    public void Dispose()
    {
        try { Run("ip", "netns", "delete", Name); } catch (InvalidOperationException) { }
    }
}
