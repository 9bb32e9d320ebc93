using KvmPS.Devices.Virtio.Mem;
using KvmPS.Vm;

namespace KvmPS.Migration;

/// <summary>
/// What both ends of a migration must agree on before any memory moves: the machine's shape and its device set, one
/// fact per line (<c>memory_bytes 268435456</c>, <c>device 00:01.0 block</c>). Paths, MACs and the like may differ
/// between hosts and are not part of it; the state records check the rest when they are restored. A configured
/// device the VM lost by a live removal has no line: its slot is empty on both ends, so the destination's config lists
/// it in <c>removed_devices</c> (or still has it there, by position, for the other devices to keep their slots).
/// </summary>
public static class MachineIdentity
{
    /// <param name="removedSlots">Configured slots the VM lost (the running source's); null: the config's own <see cref="MachineConfig.RemovedDeviceSlots"/>.</param>
    public static IReadOnlyList<string> For(MachineConfig config, uint? removedSlots = null)
    {
        uint removed = removedSlots ?? config.RemovedDeviceSlots;
        var lines = new List<string>
        {
            $"memory_bytes {config.MemoryBytes}",
            $"memory_maximum_bytes {config.MemoryMaximumBytes}",
            $"vcpus {config.VcpuCount}",
            $"max_vcpus {config.EffectiveMaxVcpus}",
            $"boot {(config.FirmwarePath is not null ? "firmware" : "kernel")}",
            $"hugepages {config.Memory.HugePages}",
        };
        for (int i = 0; i < config.Devices.Count; i++)
        {
            var d = config.Devices[i];
            if ((removed & (1u << (i + 1))) != 0) continue;
            lines.Add(d is MemDeviceConfig mem ? $"device 00:{i + 1:x2}.0 {d.Type} block_size_bytes={mem.BlockSizeBytes}" : $"device 00:{i + 1:x2}.0 {d.Type}");
        }
        return lines;
    }

    /// <summary>Null when they match; otherwise what differs, for the error message.</summary>
    public static string? Compare(IReadOnlyList<string> source, IReadOnlyList<string> destination)
    {
        var missing = source.Except(destination, StringComparer.Ordinal).ToList();
        var extra = destination.Except(source, StringComparer.Ordinal).ToList();
        if (missing.Count == 0 && extra.Count == 0) return null;
        return $"the source machine has [{string.Join("; ", missing)}] where this one has [{string.Join("; ", extra)}]";
    }
}

/// <summary>Guest pages by their index in memory-file order (regions back to back, as in a snapshot's memory.bin).</summary>
internal static class GuestPages
{
    /// <summary>
    /// The host view of pages [<paramref name="first"/>, +<paramref name="count"/>), which must lie in one region; null
    /// when the range is outside guest RAM or crosses a region's end (a hostile or corrupt stream).
    /// </summary>
    public static GuestMemoryRegion? RegionOf(GuestMemory memory, ulong first, ulong count, out ulong gpa)
    {
        ulong start = 0;
        foreach (var r in memory.Regions)
        {
            ulong pages = r.SizeBytes / MigrationStream.PageSize;
            if (first < start + pages)
            {
                gpa = r.GuestAddress + (first - start) * MigrationStream.PageSize;
                return count <= start + pages - first ? r : null;
            }
            start += pages;
        }
        gpa = 0;
        return null;
    }

    /// <summary>Splits a run of pages at region ends and into frames of at most <see cref="MigrationStream.MaxPagesPerFrame"/>.</summary>
    public static IEnumerable<(ulong First, int Count, ulong Gpa)> Chunks(GuestMemory memory, ulong first, ulong count)
    {
        ulong start = 0;
        ulong end = first + count;
        foreach (var r in memory.Regions)
        {
            ulong pages = r.SizeBytes / MigrationStream.PageSize;
            ulong from = Math.Max(first, start), to = Math.Min(end, start + pages);
            for (ulong p = from; p < to;)
            {
                int n = (int)Math.Min((ulong)MigrationStream.MaxPagesPerFrame, to - p);
                yield return (p, n, r.GuestAddress + (p - start) * MigrationStream.PageSize);
                p += (ulong)n;
            }
            start += pages;
        }
    }
}
