using KvmPS.Interop;

namespace KvmPS.Management.Definitions;

/// <summary>
/// A VM's CPU and memory limits (<see cref="VmDefinition.CpuRelativeWeight"/>, <see cref="VmDefinition.CpuMaximumPercent"/>,
/// <see cref="VmDefinition.VmmOverheadLimitBytes"/>) and how they become its VMM's cgroup limits (docs/confinement.md,
/// "cgroup limits"): the weight as it is (cgroup v2's scale; v1 shares are weight × 1024 / 100), the cap from percent
/// of the VM's vCPUs to percent of one host CPU (50% of 4 vCPUs = 200), the memory limit as the most guest RAM the
/// VM can have (MemoryMaximumBytes, hot-plug included) plus the overhead.
/// </summary>
public static class VmResourceLimits
{
    public const int DefaultCpuRelativeWeight = 100;
    public const int MaximumCpuRelativeWeight = CgroupLimits.MaximumCpuWeight;

    /// <summary>100% of the VM's vCPUs: no cap (Hyper-V's default Maximum).</summary>
    public const int NoCpuCapPercent = 100;

    /// <summary>The least overhead limit: the VMM's own memory beyond guest RAM is a few MiB; less cannot run it.</summary>
    public const long MinimumVmmOverheadLimitBytes = CgroupLimits.MinimumMemoryMaxBytes;

    /// <summary>True when the VM has any limit (its VMM then gets its own cgroup, root or not).</summary>
    public static bool Any(VmDefinition definition) =>
        definition.CpuRelativeWeight != DefaultCpuRelativeWeight || definition.CpuMaximumPercent != NoCpuCapPercent || definition.VmmOverheadLimitBytes != 0;

    /// <summary>The first setting out of range as (schema key, problem naming the value); null when all are valid.</summary>
    public static (string Property, string Problem)? Problem(VmDefinition d)
    {
        if (d.CpuRelativeWeight is < 1 or > MaximumCpuRelativeWeight)
            return ("CpuRelativeWeight", $"must be between 1 and {MaximumCpuRelativeWeight} (got {d.CpuRelativeWeight}; 100 is an equal share)");
        if (d.CpuMaximumPercent is < 1 or > NoCpuCapPercent)
            return ("CpuMaximumPercent", $"must be between 1 and 100 percent of the VM's vCPUs (got {d.CpuMaximumPercent}; 100 is no cap)");
        if (d.VmmOverheadLimitBytes != 0 && (d.VmmOverheadLimitBytes < MinimumVmmOverheadLimitBytes || d.VmmOverheadLimitBytes % VmDefinition.PageBytes != 0))
            return ("VmmOverheadLimitBytes", $"must be 0 (no limit) or at least {MinimumVmmOverheadLimitBytes} bytes (16 MiB) in whole 4096-byte pages (got {d.VmmOverheadLimitBytes})");
        return null;
    }

    /// <summary>
    /// The VMM's cgroup limits for <paramref name="definition"/> running <paramref name="vcpus"/> vCPUs (the count it
    /// starts with, or has after a hot-plug); a default setting is null (the cgroup's default).
    /// </summary>
    public static CgroupLimits For(VmDefinition definition, int vcpus) => new(
        definition.CpuRelativeWeight == DefaultCpuRelativeWeight ? null : definition.CpuRelativeWeight,
        definition.CpuMaximumPercent == NoCpuCapPercent ? null : CapPercentOfOneCpu(definition.CpuMaximumPercent, vcpus),
        definition.VmmOverheadLimitBytes == 0 ? null : definition.Memory.MaximumBytes + definition.VmmOverheadLimitBytes);

    /// <summary>Percent of the VM's <paramref name="vcpus"/> vCPUs as percent of one host CPU (at least 1).</summary>
    public static int CapPercentOfOneCpu(int percentOfVcpus, int vcpus) => Math.Max(1, percentOfVcpus * Math.Max(1, vcpus));

    /// <summary>kvmps-vmm's flags for <paramref name="limits"/> (docs/vmm.md, "cgroup limits"); the cgroup itself is passed apart.</summary>
    public static IEnumerable<string> Arguments(CgroupLimits limits)
    {
        static string N(long n) => n.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (limits.CpuWeight is { } w) { yield return "--cpu-weight"; yield return N(w); }
        if (limits.CpuMaxPercent is { } p) { yield return "--cpu-max-percent"; yield return N(p); }
        if (limits.MemoryMaxBytes is { } m) { yield return "--memory-max-bytes"; yield return N(m); }
    }
}
