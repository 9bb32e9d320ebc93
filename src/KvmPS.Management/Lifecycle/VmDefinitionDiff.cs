using System.Globalization;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Lifecycle;

/// <summary>Property-by-property comparison of two definitions of the same VM, by schema name.</summary>
public static class VmDefinitionDiff
{
    /// <summary>Properties that never need the VMM: changing them never needs a restart.</summary>
    /// <remarks>MemoryMinimumBytes is the balloon's floor, enforced by management (the VMM never sees it), so a running VM needs no restart for it.
    /// LogMaxBytes and LogFileCount are stored at once and reach the VMM at its next start (a running one keeps its limits).
    /// BootOnce is for the next start by definition: a running VM has nothing to restart for.</remarks>
    public static readonly IReadOnlySet<string> HostOnlyProperties = new HashSet<string>(StringComparer.Ordinal) { "Autostart", "Notes", "MemoryMinimumBytes", "LogMaxBytes", "LogFileCount", "BootOnce" };

    /// <summary>The changed properties as (schema name, old value, new value).</summary>
    public static IReadOnlyList<(string Property, string? Old, string? New)> Compare(VmDefinition before, VmDefinition after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        var changes = new List<(string, string?, string?)>();
        void Add<T>(string property, T old, T @new)
        {
            if (!EqualityComparer<T>.Default.Equals(old, @new))
                changes.Add((property, Show(old), Show(@new)));
        }
        Add("MemoryStartupBytes", before.Memory.StartupBytes, after.Memory.StartupBytes);
        Add("MemoryMinimumBytes", before.Memory.MinimumBytes, after.Memory.MinimumBytes);
        Add("MemoryMaximumBytes", before.Memory.MaximumBytes, after.Memory.MaximumBytes);
        Add("VcpuCount", before.Vcpus.Count, after.Vcpus.Count);
        Add("VcpuMaximum", before.Vcpus.Maximum, after.Vcpus.Maximum);
        Add("Boot", before.Boot, after.Boot);
        Add("Disks", before.Disks, after.Disks);
        Add("NetworkAdapters", before.NetworkAdapters, after.NetworkAdapters);
        Add("BalloonEnabled", before.BalloonEnabled, after.BalloonEnabled);
        Add("PciPassthrough", before.PciPassthrough, after.PciPassthrough);
        Add("HugePages", before.MemoryBacking.HugePages, after.MemoryBacking.HugePages);
        Add("KsmEnabled", before.MemoryBacking.KsmEnabled, after.MemoryBacking.KsmEnabled);
        Add("NumaNode", before.MemoryBacking.NumaNode, after.MemoryBacking.NumaNode);
        Add("Autostart", before.Autostart, after.Autostart);
        Add("Notes", before.Notes, after.Notes);
        Add("LogMaxBytes", before.LogMaxBytes, after.LogMaxBytes);
        Add("LogFileCount", before.LogFileCount, after.LogFileCount);
        Add("DvdDrives", before.DvdDrives, after.DvdDrives);
        Add("BootOrder", before.BootOrder, after.BootOrder);
        Add("BootOnce", before.BootOnce, after.BootOnce);
        Add("Display", before.Display, after.Display);
        Add("VfioUserDevices", before.VfioUserDevices, after.VfioUserDevices);
        Add("CpuRelativeWeight", before.CpuRelativeWeight, after.CpuRelativeWeight);
        Add("CpuMaximumPercent", before.CpuMaximumPercent, after.CpuMaximumPercent);
        Add("VmmOverheadLimitBytes", before.VmmOverheadLimitBytes, after.VmmOverheadLimitBytes);
        return changes;
    }

    private static string? Show<T>(T value) => value switch
    {
        null => null,
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString(),
    };
}
