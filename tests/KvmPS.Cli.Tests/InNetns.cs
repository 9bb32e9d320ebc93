namespace KvmPS.Cli.Tests;

/// <summary>
/// tests/in-netns.sh, copied beside the tests: runs a test host's process in a network namespace as
/// <c>ip netns exec</c> does, with the cgroup hierarchies a real host has (a jailed kvmps-vmm puts itself in one).
/// Run it with <c>sh</c>: a copy need not keep the executable bit.
/// </summary>
internal static class InNetns
{
    public static string Script => Path.Combine(AppContext.BaseDirectory, "in-netns.sh");
}
