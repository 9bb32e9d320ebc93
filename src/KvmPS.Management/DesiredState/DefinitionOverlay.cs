using KvmPS.Management.Definitions;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// Which definition properties a desired-state entry manages, and the definition an existing VM should have:
/// its current definition with every managed property taken from the desired one. Properties the manifest does
/// not state are left as they are (DSC semantics), except that stating <c>MemoryStartupBytes</c> also manages
/// the minimum and maximum (they default to the startup value) and <c>VcpuCount</c> also manages
/// <c>VcpuMaximum</c> (defaults to the count): the pairs are validated together, so they are enforced together.
/// </summary>
public static class DefinitionOverlay
{
    /// <summary>The comparable schema properties, in <see cref="Lifecycle.VmDefinitionDiff"/> order.</summary>
    public static readonly IReadOnlyList<string> Properties = new[]
    {
        "MemoryStartupBytes", "MemoryMinimumBytes", "MemoryMaximumBytes", "VcpuCount", "VcpuMaximum", "Boot", "Disks",
        "NetworkAdapters", "BalloonEnabled", "PciPassthrough", "HugePages", "KsmEnabled", "NumaNode", "Autostart", "Notes",
        "LogMaxBytes", "LogFileCount", "DvdDrives", "BootOrder", "BootOnce", "Display", "VfioUserDevices",
        "CpuRelativeWeight", "CpuMaximumPercent", "VmmOverheadLimitBytes",
    };

    /// <summary>The managed properties for the schema keys an entry states (case-insensitive; Name and unknown keys ignored).</summary>
    public static IReadOnlySet<string> ManagedFromKeys(IEnumerable<string> statedKeys)
    {
        var managed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var key in statedKeys)
        {
            var property = Properties.FirstOrDefault(p => p.Equals(key, StringComparison.OrdinalIgnoreCase));
            if (property is null)
                continue;
            managed.Add(property);
            if (property == "MemoryStartupBytes")
            {
                managed.Add("MemoryMinimumBytes");
                managed.Add("MemoryMaximumBytes");
            }
            else if (property == "VcpuCount")
            {
                managed.Add("VcpuMaximum");
            }
        }
        return managed;
    }

    /// <summary><paramref name="current"/> with the <paramref name="managed"/> properties of <paramref name="desired"/>.</summary>
    public static VmDefinition Apply(VmDefinition current, VmDefinition desired, IReadOnlySet<string> managed)
    {
        ArgumentNullException.ThrowIfNull(current);
        ArgumentNullException.ThrowIfNull(desired);
        T Pick<T>(string property, T currentValue, T desiredValue) => managed.Contains(property) ? desiredValue : currentValue;
        return current with
        {
            Memory = new MemorySettings(
                Pick("MemoryStartupBytes", current.Memory.StartupBytes, desired.Memory.StartupBytes),
                Pick("MemoryMinimumBytes", current.Memory.MinimumBytes, desired.Memory.MinimumBytes),
                Pick("MemoryMaximumBytes", current.Memory.MaximumBytes, desired.Memory.MaximumBytes)),
            Vcpus = new VcpuSettings(
                Pick("VcpuCount", current.Vcpus.Count, desired.Vcpus.Count),
                Pick("VcpuMaximum", current.Vcpus.Maximum, desired.Vcpus.Maximum)),
            Boot = Pick("Boot", current.Boot, desired.Boot),
            Disks = Pick("Disks", current.Disks, desired.Disks),
            NetworkAdapters = Pick("NetworkAdapters", current.NetworkAdapters, desired.NetworkAdapters),
            BalloonEnabled = Pick("BalloonEnabled", current.BalloonEnabled, desired.BalloonEnabled),
            PciPassthrough = Pick("PciPassthrough", current.PciPassthrough, desired.PciPassthrough),
            VfioUserDevices = Pick("VfioUserDevices", current.VfioUserDevices, desired.VfioUserDevices),
            MemoryBacking = new MemoryBackingSettings(
                Pick("HugePages", current.MemoryBacking.HugePages, desired.MemoryBacking.HugePages),
                Pick("KsmEnabled", current.MemoryBacking.KsmEnabled, desired.MemoryBacking.KsmEnabled),
                Pick("NumaNode", current.MemoryBacking.NumaNode, desired.MemoryBacking.NumaNode)),
            Autostart = Pick("Autostart", current.Autostart, desired.Autostart),
            Notes = Pick("Notes", current.Notes, desired.Notes),
            LogMaxBytes = Pick("LogMaxBytes", current.LogMaxBytes, desired.LogMaxBytes),
            LogFileCount = Pick("LogFileCount", current.LogFileCount, desired.LogFileCount),
            DvdDrives = Pick("DvdDrives", current.DvdDrives, desired.DvdDrives),
            BootOrder = Pick("BootOrder", current.BootOrder, desired.BootOrder),
            BootOnce = Pick("BootOnce", current.BootOnce, desired.BootOnce),
            Display = Pick("Display", current.Display, desired.Display),
            CpuRelativeWeight = Pick("CpuRelativeWeight", current.CpuRelativeWeight, desired.CpuRelativeWeight),
            CpuMaximumPercent = Pick("CpuMaximumPercent", current.CpuMaximumPercent, desired.CpuMaximumPercent),
            VmmOverheadLimitBytes = Pick("VmmOverheadLimitBytes", current.VmmOverheadLimitBytes, desired.VmmOverheadLimitBytes),
        };
    }
}
