using KvmPS.Management.Networks;

namespace KvmPS.Management.Tests.Networks;

/// <summary>
/// A network namespace a test makes (<c>kvt-&lt;random&gt;</c>, loopback up) and deletes, with a
/// <see cref="HostCommands"/> that runs the code under test inside it: bridges, nftables, sysctl and dnsmasq never
/// touch the host. Deleting the namespace removes every interface and table in it; dnsmasq processes the test
/// started are killed by pid first (they would otherwise keep running on nothing).
/// </summary>
internal sealed class NetworkNamespace : IDisposable
{
    public NetworkNamespace(string prefix = "kvt")
    {
        Name = $"{prefix}-{Guid.NewGuid().ToString("N")[..8]}";
        Run("ip", "netns", "add", Name);
        Run("ip", "-n", Name, "link", "set", "lo", "up");
        Host = new HostCommands(Name);
    }

    public string Name { get; }
    internal HostCommands Host { get; }

    /// <summary>Runs a command (on the host side, e.g. <c>ip -n NS …</c>); throws with its stderr when it fails.</summary>
    public static string Run(params string[] argv)
    {
        var result = new HostCommands().Run(argv);
        if (!result.Succeeded)
            throw new InvalidOperationException($"'{string.Join(' ', argv)}' failed ({result.ExitCode}): {result.StandardError}");
        return result.StandardOutput;
    }

    /// <summary>Runs a command inside the namespace and returns what it did.</summary>
    public HostCommands.Result Exec(params string[] argv) => Host.Run(argv);

    public void Dispose()
    {
        // dnsmasq processes bound in the namespace: kill them (by their pids) before the namespace goes.
        var pids = new HostCommands().Run("ip", "netns", "pids", Name).StandardOutput
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var pid in pids)
            if (int.TryParse(pid, out var p))
                KvmPS.Interop.ProcessInterop.Kill(p, 9);
        new HostCommands().Run("ip", "netns", "del", Name);
    }

    /// <summary>The xunit category of tests that make namespaces (they need root, iproute2, nftables, dnsmasq, busybox).</summary>
    public const string Category = "NetNamespace";
}
