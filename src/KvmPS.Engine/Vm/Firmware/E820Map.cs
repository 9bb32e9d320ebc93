namespace KvmPS.Vm.Firmware;

public enum E820Type : uint { Ram = 1, Reserved = 2, Acpi = 3, Nvs = 4 }

public readonly record struct E820Entry(ulong Address, ulong SizeBytes, E820Type Type)
{
    public ulong End => Address + SizeBytes;
}

/// <summary>The guest's physical memory map as firmware reports it (e820 in boot_params, fw_cfg later).</summary>
public static class E820Map
{
    public const int MaxEntries = 128;

    public static IReadOnlyList<E820Entry> For(GuestMemory memory)
    {
        var map = new List<E820Entry>
        {
            new(0, MemoryLayout.EbdaStart, E820Type.Ram),
            new(MemoryLayout.EbdaStart, MemoryLayout.HighMemoryStart - MemoryLayout.EbdaStart, E820Type.Reserved),
        };
        foreach (var region in memory.BootRegions) // the hot-plug region is not RAM until its device plugs it
        {
            ulong start = Math.Max(region.GuestAddress, MemoryLayout.HighMemoryStart);
            if (region.EndAddress > start) map.Add(new E820Entry(start, region.EndAddress - start, E820Type.Ram));
        }
        // PCI ECAM (described by MCFG) must be reserved, or an OS may place something there.
        map.Add(new E820Entry(MemoryLayout.PciEcamBase, MemoryLayout.PciEcamSize, E820Type.Reserved));
        map.Sort((a, b) => a.Address.CompareTo(b.Address));
        return map;
    }
}
