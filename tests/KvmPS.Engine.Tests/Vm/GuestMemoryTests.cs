using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Vm;

/// <summary>Guest RAM backing: layout around the MMIO hole, bounds checks, and the hugepage / KSM / NUMA options, checked in /proc.</summary>
public class GuestMemoryTests
{
    /// <summary>The VmFlags/KernelPageSize/… lines of the smaps entry (VMA) containing <paramref name="address"/>
    /// (adjacent anonymous mappings with equal flags may have been merged into one VMA).</summary>
    private static Dictionary<string, string> SmapsOf(nint address)
    {
        var result = new Dictionary<string, string>();
        bool inside = false;
        ulong a = (ulong)address;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-');
            if (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && dash > 0 && line.IndexOf(' ') > dash)
            {
                ulong start = Convert.ToUInt64(line[..dash], 16), end = Convert.ToUInt64(line[(dash + 1)..line.IndexOf(' ')], 16);
                inside = a >= start && a < end;
            }
            else if (inside && line.IndexOf(':') is int colon and > 0)
                result[line[..colon]] = line[(colon + 1)..].Trim();
        }
        return result;
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern unsafe int mincore(nint addr, nuint length, byte* vec);

    /// <summary>How many pages of [address, address+length) are resident, by mincore(2).</summary>
    private static unsafe long ResidentPages(nint address, ulong length)
    {
        var vec = new byte[length / 4096];
        fixed (byte* v = vec) Assert.Equal(0, mincore(address, (nuint)length, v));
        return vec.Count(b => (b & 1) != 0);
    }

    [Fact]
    public void RamAboveThreeGiBContinuesAtFourGiB()
    {
        using var memory = GuestMemory.Create(5UL << 30);
        Assert.Equal(2, memory.Regions.Count);
        Assert.Equal(0UL, memory.Regions[0].GuestAddress);
        Assert.Equal(3UL << 30, memory.Regions[0].SizeBytes);
        Assert.Equal(4UL << 30, memory.Regions[1].GuestAddress);
        Assert.Equal(2UL << 30, memory.Regions[1].SizeBytes);
        Assert.Null(memory.FindRegion(3UL << 30));
        memory.WriteUInt64((4UL << 30) + 8, 0x1122334455667788);
        Assert.Equal(0x1122334455667788UL, memory.ReadUInt64((4UL << 30) + 8));
    }

    [Fact]
    public void AccessesOutsideGuestRamAreRefused()
    {
        using var memory = GuestMemory.Create(16UL << 20);
        Assert.Throws<GuestMemoryException>(() => memory.GetReadOnlySpan(16UL << 20, 1).Length);
        Assert.Throws<GuestMemoryException>(() => memory.GetReadOnlySpan((16UL << 20) - 4, 8).Length); // straddles the end
        Assert.Throws<GuestMemoryException>(() => memory.GetReadOnlySpan(ulong.MaxValue - 2, 8).Length);
        Assert.False(memory.TryGetWritableSpan(0xFFFF_FFFF_FFFF_0000, 16, out _));
        Assert.False(memory.TryGetReadOnlySpan(0, -1, out _));
        Assert.True(memory.TryGetWritableSpan((16UL << 20) - 8, 8, out var ok) && ok.Length == 8);
        Assert.False(memory.IsValidRange((16UL << 20) - 8, 9));
    }

    [Fact]
    public void SizesAreValidated()
    {
        Assert.Contains("too small", Assert.Throws<GuestMemoryException>(() => GuestMemory.Create(1UL << 20)).Message);
        Assert.Contains("multiple of the 4 KiB", Assert.Throws<GuestMemoryException>(() => GuestMemory.Create((16UL << 20) + 1)).Message);
        Assert.Contains("Cannot map", Assert.Throws<GuestMemoryException>(() => GuestMemory.Create(1UL << 50)).Message);
    }

    [Fact]
    public void KsmMarksGuestRamMergeable()
    {
        using var memory = GuestMemory.Create(32UL << 20, new GuestMemoryOptions { Ksm = true });
        Assert.Contains(" mg", " " + SmapsOf(memory.Regions[0].HostAddress)["VmFlags"]);
        using var plain = GuestMemory.Create(32UL << 20);
        Assert.DoesNotContain(" mg", " " + SmapsOf(plain.Regions[0].HostAddress)["VmFlags"]);
    }

    [Fact]
    public void TransparentHugePagesAreRequested()
    {
        if (File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled").Contains("[never]")) return; // THP disabled on this host
        using var memory = GuestMemory.Create(32UL << 20, new GuestMemoryOptions { HugePages = HugePageMode.TransparentHugePages });
        Assert.Contains(" hg", " " + SmapsOf(memory.Regions[0].HostAddress)["VmFlags"]);
    }

    [Fact]
    public void NumaBindingAppliesToGuestRam()
    {
        using var memory = GuestMemory.Create(32UL << 20, new GuestMemoryOptions { NumaNode = 0 });
        ulong address = (ulong)memory.Regions[0].HostAddress;
        string line = File.ReadLines("/proc/self/numa_maps")
            .Select(l => (Start: Convert.ToUInt64(l[..l.IndexOf(' ')], 16), Line: l))
            .Where(e => e.Start <= address).MaxBy(e => e.Start).Line; // the VMA containing the mapping
        Assert.Contains("bind:0", line);
        var e = Assert.Throws<GuestMemoryException>(() => GuestMemory.Create(32UL << 20, new GuestMemoryOptions { NumaNode = 63 }));
        Assert.Contains("NUMA node 63", e.Message);
    }

    [Fact]
    public void HugeTlbFsBackingUsesHugePagesOrSaysWhyNot()
    {
        const string knob = "/proc/sys/vm/nr_hugepages";
        string before = File.ReadAllText(knob).Trim();
        var options = new GuestMemoryOptions { HugePages = HugePageMode.HugeTlbFs };
        try
        {
            File.WriteAllText(knob, "0");
            var e = Assert.Throws<GuestMemoryException>(() => GuestMemory.Create(32UL << 20, options));
            Assert.Contains("nr_hugepages", e.Message);

            File.WriteAllText(knob, "32");
            if (File.ReadAllText(knob).Trim() != "32") return; // the host could not reserve them
            using var memory = GuestMemory.Create(32UL << 20, options);
            memory.Fill(0, 32 << 20, 0xAB);
            var smaps = SmapsOf(memory.Regions[0].HostAddress);
            Assert.Equal("2048 kB", smaps["KernelPageSize"]);
            Assert.Contains(" ht", " " + smaps["VmFlags"]);
            Assert.Contains("multiple of the 2 MiB", Assert.Throws<GuestMemoryException>(() => GuestMemory.Create((32UL << 20) + 4096, options)).Message);
        }
        catch (UnauthorizedAccessException) { /* not root: the refusal path above is still covered where it ran */ }
        finally
        {
            try { File.WriteAllText(knob, before); } catch (UnauthorizedAccessException) { }
        }
    }

    [Fact]
    public void DiscardGivesPagesBackToTheHost()
    {
        using var memory = GuestMemory.Create(64UL << 20);
        memory.Fill(0, 64 << 20, 0x5A);
        nint host = memory.Regions[0].HostAddress;
        Assert.Equal(16384, ResidentPages(host, 64UL << 20));
        memory.Discard(0, 32UL << 20);
        Assert.Equal(0, ResidentPages(host, 32UL << 20));
        Assert.Equal(8192, ResidentPages(host + (32 << 20), 32UL << 20));
        Assert.Equal(0, memory.ReadByte(4096)); // discarded pages read back as zero
        Assert.Equal(0x5A, memory.ReadByte(40UL << 20));
        Assert.Throws<GuestMemoryException>(() => memory.Discard(100, 4096));
    }
}
