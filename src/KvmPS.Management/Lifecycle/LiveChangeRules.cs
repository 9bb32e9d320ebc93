using KvmPS.Management.Definitions;

namespace KvmPS.Management.Lifecycle;

/// <summary>
/// What a running VMM can change without a restart, from its own <c>describe</c> reply: the vCPU ceiling its ACPI
/// tables were built for and whether it resizes memory.
/// </summary>
/// <param name="MaxVcpus">The VMM's <c>max_vcpus</c>: vCPUs can be hot-added up to this many.</param>
/// <param name="MemoryResize">The VMM answers <c>memory.set</c> (virtio-mem).</param>
/// <param name="BootMemoryBytes">The memory the VMM booted with: virtio-mem grows from there (the balloon goes below it).</param>
public sealed record LiveLimits(int MaxVcpus, bool MemoryResize, long BootMemoryBytes = 0)
{
    /// <summary>
    /// The VMM's own memory ceiling (<c>memory.get</c>'s <c>maximum_bytes</c>, the maximum it was started with);
    /// null: the stored MemoryMaximumBytes before the change stands for it.
    /// </summary>
    public long? MaximumMemoryBytes { get; init; }

    /// <summary>The VMM lists <c>device.add</c>/<c>device.remove</c>: disks and network adapters are hot-plugged (ACPI PCI hot-plug).</summary>
    public bool DeviceHotplug { get; init; }

    /// <summary>
    /// The definition's disks (by path as in the definition) the running VMM cannot remove, so removing one needs a
    /// restart: the VM's first disk (its boot disk), and with a VMM from before live removal of configured devices
    /// every disk it was started with. Other configured disks and hot-plugged ones leave live (ACPI eject).
    /// </summary>
    public IReadOnlySet<string> ColdPluggedDisks { get; init; } = new HashSet<string>();

    /// <summary>The definition's adapters (by MAC) the running VMM cannot remove (only with a VMM from before live removal of configured devices); see <see cref="ColdPluggedDisks"/>.</summary>
    public IReadOnlySet<string> ColdPluggedAdapters { get; init; } = new HashSet<string>();

    /// <summary>The VMM marks its devices <c>removable</c> in <c>describe</c>: it removes configured devices live too (all but the boot disk and the machine's own devices).</summary>
    public bool RemovesConfiguredDevices { get; init; }

    /// <summary>The VMM lists <c>media.change</c>: a DVD drive's ISO can be inserted or ejected while it runs.</summary>
    public bool MediaChange { get; init; }

    /// <summary>The VMM runs in a cgroup of its own (<c>…/kvmps/VM</c>) whose limits management can write (docs/confinement.md, "cgroup limits").</summary>
    public bool CgroupLimits { get; init; }

    /// <summary>The limits of a live VM, or null when no VMM answers.</summary>
    public static LiveLimits? From(VmLiveInfo? live) => live is null ? null
        : new LiveLimits(live.MaxVcpus, live.MemoryResize, live.MemoryBytes)
        {
            MaximumMemoryBytes = live.MemoryMaximumBytes,
            DeviceHotplug = live.DeviceHotplug,
            ColdPluggedDisks = live.ColdPluggedDisks,
            ColdPluggedAdapters = live.ColdPluggedAdapters,
            RemovesConfiguredDevices = live.RemovesConfiguredDevices,
            MediaChange = live.MediaChange,
            CgroupLimits = live.CgroupLimits,
        };
}

/// <summary>How a definition change should reach a running VM (virsh's <c>--live</c> / <c>--config</c> / <c>--current</c>).</summary>
public enum ChangeScope
{
    /// <summary>Stored; applied to the running VM where it can be, else it takes effect at the next start.</summary>
    Current,

    /// <summary>Stored and applied to the running VM now; refused (nothing changes) when the VM is not running or the change cannot be applied live.</summary>
    Live,

    /// <summary>Stored only: a running VM keeps the old value until it is restarted.</summary>
    Config,
}

/// <summary>
/// THE one place that decides which property changes a running VM takes without a restart. Pure, so the
/// reconciler's plan (UpdateLive vs UpdateNeedsRestart) and <see cref="VmManager.Update"/> always agree.
/// </summary>
public static class LiveChangeRules
{
    /// <summary>
    /// True when <paramref name="property"/> can go from <paramref name="before"/> to <paramref name="after"/> on a VMM
    /// with <paramref name="limits"/>: the vCPU count within the VMM's maximum (ACPI CPU hot-plug), and the memory
    /// between the boot memory and the stored maximum when the VMM resizes memory, disks and network adapters added or
    /// removed whole when the VMM hot-plugs devices: configured ones too (ACPI eject of a configured slot), except the
    /// ones it cannot remove (the first disk; any configured device with a VMM from before that, see LiveLimits).
    /// A new maximum, boot source, a disk changed in place, … need a restart.
    /// </summary>
    public static bool CanApplyLive(string property, VmDefinition before, VmDefinition after, LiveLimits limits)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        ArgumentNullException.ThrowIfNull(limits);
        return property switch
        {
            "VcpuCount" => after.Vcpus.Count >= 1 && after.Vcpus.Count <= limits.MaxVcpus,
            // The VMM's memory ceiling is the maximum it was started with (a maximum stored since with --config is not it).
            "MemoryStartupBytes" => limits.MemoryResize && after.Memory.StartupBytes >= limits.BootMemoryBytes
                                    && after.Memory.StartupBytes <= (limits.MaximumMemoryBytes ?? before.Memory.MaximumBytes),
            "Disks" => limits.DeviceHotplug && DeviceChange.OnlyAddsOrRemoves(before.Disks, after.Disks, DeviceChange.DiskKey)
                       && !DeviceChange.Removed(before.Disks, after.Disks, DeviceChange.DiskKey).Any(d => limits.ColdPluggedDisks.Contains(DeviceChange.DiskKey(d))),
            // An SR-IOV adapter is a VFIO passthrough device, which is not hot-plugged: it comes and goes with a restart.
            "NetworkAdapters" => limits.DeviceHotplug && !DeviceChange.ChangesSriovAdapters(before, after)
                       && DeviceChange.OnlyAddsOrRemoves(before.NetworkAdapters, after.NetworkAdapters, DeviceChange.AdapterKey)
                       && !DeviceChange.Removed(before.NetworkAdapters, after.NetworkAdapters, DeviceChange.AdapterKey).Any(a => limits.ColdPluggedAdapters.Contains(DeviceChange.AdapterKey(a))),
            // Passthrough devices come and go whole through the same ACPI hot-plug as disks. A vfio-user server maps guest
            // RAM for DMA, which needs it in memfds: a VM started with KSM and without a vfio-user device has it elsewhere.
            "VfioUserDevices" => limits.DeviceHotplug && (DeviceChange.Added(before.VfioUserDevices, after.VfioUserDevices, s => s).Count == 0 || DeviceChange.GuestRamShareable(before)),
            // Kernel VFIO: bound to vfio-pci at the hot-plug, given back after the guest's eject (not run on real hardware here).
            "PciPassthrough" => limits.DeviceHotplug,
            // Media in and out of the drives the VM has; adding or removing a drive needs a restart (no cdrom hot-plug).
            "DvdDrives" => limits.MediaChange && before.DvdDrives.Count == after.DvdDrives.Count,
            // Written into the VMM's cgroup by management; a VMM started without one takes them at its next start.
            "CpuRelativeWeight" or "CpuMaximumPercent" or "VmmOverheadLimitBytes" => limits.CgroupLimits,
            _ => false,
        };
    }

    /// <summary>The properties of a change to a running VM that only take effect at its next start.</summary>
    public static IReadOnlyList<string> RestartNeeded(VmDefinition before, VmDefinition after, LiveLimits? limits) =>
        VmDefinitionDiff.Compare(before, after)
            .Select(d => d.Property)
            .Where(p => !VmDefinitionDiff.HostOnlyProperties.Contains(p) && (limits is null || !CanApplyLive(p, before, after, limits)))
            .ToList();
}

/// <summary>
/// A change to a device list (disks, network adapters) as hot-plug sees it: the entries removed and the entries added,
/// each identified by its key (a disk by its path, an adapter by its MAC). An entry kept under the same key but with
/// other settings is neither: a running device cannot be changed in place.
/// </summary>
public static class DeviceChange
{
    public static string DiskKey(DiskDefinition disk) => disk.Path;

    public static string AdapterKey(NetworkAdapterDefinition adapter) => adapter.MacAddress.ToString();

    public static string PciKey(PciAddress address) => address.ToString();

    /// <summary>
    /// Whether the VMM of a VM started with <paramref name="definition"/> has guest RAM in memfds, which a vfio-user server
    /// needs for DMA: management asks for memfds unless KSM is on, and the VMM takes them anyway for a vfio-user device.
    /// </summary>
    public static bool GuestRamShareable(VmDefinition definition) => !definition.MemoryBacking.KsmEnabled || definition.VfioUserDevices.Count > 0;

    /// <summary>True when an SR-IOV adapter (<see cref="NetworkAdapterDefinition.SriovVf"/>) is added, removed or changed.</summary>
    public static bool ChangesSriovAdapters(VmDefinition before, VmDefinition after) =>
        !before.NetworkAdapters.Where(a => a.SriovVf is not null).SequenceEqual(after.NetworkAdapters.Where(a => a.SriovVf is not null));

    /// <summary>Entries of <paramref name="before"/> whose key <paramref name="after"/> does not have.</summary>
    public static IReadOnlyList<T> Removed<T>(IReadOnlyList<T> before, IReadOnlyList<T> after, Func<T, string> key)
    {
        var kept = after.Select(key).ToHashSet(StringComparer.Ordinal);
        return before.Where(x => !kept.Contains(key(x))).ToList();
    }

    /// <summary>Entries of <paramref name="after"/> whose key <paramref name="before"/> does not have, with their index in <paramref name="after"/>.</summary>
    public static IReadOnlyList<(T Entry, int Index)> Added<T>(IReadOnlyList<T> before, IReadOnlyList<T> after, Func<T, string> key)
    {
        var had = before.Select(key).ToHashSet(StringComparer.Ordinal);
        return after.Select((x, i) => (x, i)).Where(e => !had.Contains(key(e.x))).ToList();
    }

    /// <summary>
    /// True when every entry both lists share is unchanged and in the same order: the change is whole devices added or
    /// removed, which hot-plug can do. Settings changed in place or a new order only take effect at the next start.
    /// </summary>
    public static bool OnlyAddsOrRemoves<T>(IReadOnlyList<T> before, IReadOnlyList<T> after, Func<T, string> key)
    {
        var afterKeys = after.Select(key).ToHashSet(StringComparer.Ordinal);
        var beforeKeys = before.Select(key).ToHashSet(StringComparer.Ordinal);
        var keptBefore = before.Where(x => afterKeys.Contains(key(x))).ToList();
        var keptAfter = after.Where(x => beforeKeys.Contains(key(x))).ToList();
        return keptBefore.SequenceEqual(keptAfter);
    }
}
