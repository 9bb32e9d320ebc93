using KvmPS.Vm;
using KvmPS.Vm.Firmware;

namespace KvmPS.Engine.Tests.Firmware;

/// <summary>The e820 map for guest memory below and above the 3 GiB MMIO hole (docs/guest-layout.md).</summary>
public class E820MapTests
{
    private const ulong MiB = 1UL << 20, GiB = 1UL << 30;

    [Fact]
    public void SmallGuestHasLowRamEbdaAndBiosHoleAndHighRam()
    {
        using var memory = GuestMemory.Create(256 * MiB);
        var map = E820Map.For(memory);
        Assert.Equal(
        [
            new E820Entry(0, 0x9fc00, E820Type.Ram),
            new E820Entry(0x9fc00, 0x10_0000 - 0x9fc00, E820Type.Reserved),
            new E820Entry(0x10_0000, 256 * MiB - 0x10_0000, E820Type.Ram),
            new E820Entry(MemoryLayout.PciEcamBase, MemoryLayout.PciEcamSize, E820Type.Reserved),
        ], map);
    }

    [Fact]
    public void RamAbove3GiBContinuesAt4GiB()
    {
        using var memory = GuestMemory.Create(5 * GiB);
        var map = E820Map.For(memory);
        Assert.Equal(5, map.Count);
        Assert.Equal(new E820Entry(0x10_0000, 3 * GiB - 0x10_0000, E820Type.Ram), map[2]);
        Assert.Equal(new E820Entry(MemoryLayout.PciEcamBase, MemoryLayout.PciEcamSize, E820Type.Reserved), map[3]);
        Assert.Equal(new E820Entry(4 * GiB, 2 * GiB, E820Type.Ram), map[4]);
        Assert.Equal(5 * GiB, map.Where(e => e.Type == E820Type.Ram).Aggregate(0UL, (s, e) => s + e.SizeBytes) + map[1].SizeBytes);
        // Nothing usable in the MMIO hole, where the IOAPIC and LAPIC live.
        Assert.DoesNotContain(map, e => e.Type == E820Type.Ram && e.Address < 4 * GiB && e.End > MemoryLayout.MmioHoleStart);
    }

    [Fact]
    public void ExactlyThreeGiBHasNoHighRegion()
    {
        using var memory = GuestMemory.Create(3 * GiB);
        var map = E820Map.For(memory);
        Assert.Equal(4, map.Count);
        Assert.Equal(3 * GiB, map[2].End);
        Assert.Equal(E820Type.Reserved, map[^1].Type); // ECAM
    }

    [Fact]
    public void EntriesAreSortedAndDisjoint()
    {
        using var memory = GuestMemory.Create(4 * GiB + 64 * MiB);
        var map = E820Map.For(memory);
        for (int i = 1; i < map.Count; i++) Assert.True(map[i - 1].End <= map[i].Address);
        Assert.Equal(new E820Entry(4 * GiB, 1 * GiB + 64 * MiB, E820Type.Ram), map[^1]);
    }
}
