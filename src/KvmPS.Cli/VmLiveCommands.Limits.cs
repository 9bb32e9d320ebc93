using System.Globalization;
using KvmPS.Management.Definitions;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps vm setlimits</c>: the VM's CPU weight and cap and its VMM's memory overhead limit (docs/confinement.md,
/// "cgroup limits"); a running VM whose VMM has a cgroup of its own gets them at once, else at its next start.
/// </summary>
internal sealed partial class VmLiveCommands
{
    internal const string SetLimitsUsage = "vm setlimits NAME [--cpu-weight N] [--cpu-maximum-percent N] [--vmm-overhead-limit SIZE|0] [--live|--config] [--json]";

    public int SetLimits(ParsedArgs options)
    {
        var p = options.Positionals("vm setlimits", SetLimitsUsage, 1, 1);
        var change = new VmSettingsChange
        {
            CpuRelativeWeight = options.Value("--cpu-weight") is { } w ? Whole("--cpu-weight", w, 1, VmResourceLimits.MaximumCpuRelativeWeight) : null,
            CpuMaximumPercent = options.Value("--cpu-maximum-percent") is { } c ? Whole("--cpu-maximum-percent", c, 1, VmResourceLimits.NoCpuCapPercent) : null,
            // 0 (no limit) is the one size without a unit.
            VmmOverheadLimitBytes = options.Value("--vmm-overhead-limit") is { } o ? o.Trim() == "0" ? 0 : ParseSize(o) : null,
        };
        if (change.CpuRelativeWeight is null && change.CpuMaximumPercent is null && change.VmmOverheadLimitBytes is null)
            throw new UsageException("vm setlimits: give --cpu-weight, --cpu-maximum-percent, --vmm-overhead-limit or several of them");
        var result = app.Manager.ChangeSettings(p[0], change, Scope(options, "vm setlimits"));
        return Report(options, p[0], result);
    }

    private static int Whole(string flag, string text, int minimum, int maximum) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= minimum && n <= maximum
            ? n
            : throw new UsageException($"vm setlimits: {flag} must be a whole number from {minimum} to {maximum} (got '{text}')");

    /// <summary>The help page of <c>vm setlimits</c> (HelpText falls back to it).</summary>
    internal static string? LimitsHelp(string topic) => topic == "vm setlimits" ? $"""
        Usage: kvmps {SetLimitsUsage}

        Sets the VM's CPU and memory limits, which kvmps-vmm applies to its own cgroup (docs/confinement.md,
        "cgroup limits"; Hyper-V's Set-VMProcessor -RelativeWeight -Maximum). A running VM whose VMM has a cgroup of
        its own (started with limits, or jailed) gets them at once; otherwise they are stored for its next start.
          --cpu-weight N             share of CPU time against other VMs when the host is busy, 1-10000 (100: equal)
          --cpu-maximum-percent N    cap in percent of the VM's own vCPUs, 1-100 (100: no cap; 50 on 4 vCPUs = 2 host CPUs)
          --vmm-overhead-limit SIZE  memory the VMM may use beyond guest RAM: its cgroup's limit is MemoryMaximumBytes +
                                     SIZE (at least 16M; 0: no limit)
          --live     change the running VM now (and store it); fails, changing nothing, if it cannot
          --config   store it only
        Exit: 0, 2 bad value, 4 refused, 5 no such VM.

        """ : null;
}
