using KvmPS.Management.Lifecycle;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// The <c>-Live</c> / <c>-Config</c> switches of the cmdlets that change a VM's devices, in virsh's sense: neither
/// changes the running VM where it can and stores the change (virsh's <c>--current</c>); <c>-Live</c> insists on the
/// running VM (nothing changes when it cannot take it); <c>-Config</c> only stores the change for the next start.
/// </summary>
internal static class LiveChangeParameters
{
    /// <summary>The longest removal wait <c>-TimeoutSec</c> takes (the VMM's own limit for <c>timeout_ms</c>).</summary>
    public const int MaximumTimeoutSec = 600;

    public static ChangeScope Scope(bool live, bool config) => (live, config) switch
    {
        (true, true) => throw KvmParameterException.Combination("Config", true, "Give -Live or -Config, not both."),
        (true, false) => ChangeScope.Live,
        (false, true) => ChangeScope.Config,
        _ => ChangeScope.Current,
    };

    /// <summary>What the ShouldProcess text adds for the scope.</summary>
    public static string Describe(ChangeScope scope) => scope switch
    {
        ChangeScope.Live => " (on the running VM)",
        ChangeScope.Config => " (in the stored definition only)",
        _ => "",
    };

    /// <summary>The same scope as kvmps options (<c>--live</c>, <c>--config</c>, none), for -HostName.</summary>
    public static IReadOnlyList<string> Arguments(bool live, bool config) => Scope(live, config) switch
    {
        ChangeScope.Live => ["--live"],
        ChangeScope.Config => ["--config"],
        _ => [],
    };
}
