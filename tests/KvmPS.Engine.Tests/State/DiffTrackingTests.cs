using KvmPS.Interop;
using KvmPS.State;
using KvmPS.Vm;
using Xunit;

namespace KvmPS.Engine.Tests.State;

/// <summary>
/// The pieces of diff snapshots in one process: the page bitmap, the device-written page record and KVM's dirty log
/// behind <see cref="GuestMemory.HarvestDirtyPages"/>, pagemap-based skipping of never-touched pages, and the
/// pages.bin format.
/// </summary>
public class DiffTrackingTests
{
    private const ulong Page = 4096;

    [Fact]
    public void PageBitmapKeepsRunsCountsAndUnalignedUnions()
    {
        var bitmap = new GuestPageBitmap(200);
        bitmap.Add(0);
        bitmap.AddRange(62, 70); // 62..131: crosses two word boundaries, one word in full
        bitmap.Add(199);
        Assert.True(bitmap.Contains(0) && bitmap.Contains(62) && bitmap.Contains(131) && bitmap.Contains(199));
        Assert.False(bitmap.Contains(1) || bitmap.Contains(61) || bitmap.Contains(132) || bitmap.Contains(200));
        Assert.Equal(72UL, bitmap.Count);
        Assert.Equal([(0UL, 1UL), (62UL, 70UL), (199UL, 1UL)], bitmap.Runs().ToArray());

        // A slot's log that starts at page 70 (not a multiple of 64): bit i is page 70 + i.
        var other = new GuestPageBitmap(200);
        other.UnionWith(70, [0b101UL, 1UL << 63]);
        Assert.Equal([(70UL, 1UL), (72UL, 1UL), (197UL, 1UL)], other.Runs().ToArray());
        // Aligned: whole words are OR-ed.
        var aligned = new GuestPageBitmap(200);
        aligned.UnionWith(64, [ulong.MaxValue]);
        Assert.Equal([(64UL, 64UL)], aligned.Runs().ToArray());
        bitmap.UnionWith(other);
        Assert.Equal(73UL, bitmap.Count); // 197 is new; 70 and 72 were in already

        Assert.Throws<ArgumentOutOfRangeException>(() => bitmap.Add(200));
        Assert.Throws<ArgumentOutOfRangeException>(() => other.UnionWith(190, [1UL << 20]));
        Assert.Throws<ArgumentException>(() => new GuestPageBitmap(65, [0, 2])); // bit 65 is beyond 65 pages
    }

    private static (KvmSystemHandle System, KvmVmHandle Vm, GuestMemory Memory) RegisteredMemory(ulong bytes)
    {
        var system = Kvm.OpenSystem("/dev/kvm");
        var vm = Kvm.CreateVm(system);
        var memory = GuestMemory.Create(bytes);
        memory.RegisterWith(vm);
        return (system, vm, memory);
    }

    [Fact]
    public void WritesThroughWritableSpansAreHarvestedOnceAndReadsAreNot()
    {
        var (system, vm, memory) = RegisteredMemory(32UL << 20);
        using (system) using (vm) using (memory)
        {
            memory.Write(0x5000, [1, 2, 3]);          // page 5
            memory.StartDirtyTracking();              // forgets page 5: "since" starts now
            Assert.Equal(0UL, memory.HarvestDirtyPages().Count);

            memory.WriteUInt32(0x7ffe, 1);            // straddles pages 7 and 8
            memory.Fill(0x10_0000, 3 * (int)Page, 0xaa); // pages 256..258
            Assert.True(memory.TryGetWritableSpan(0x20_0000, 1, out var s));
            s[0] = 9;                                  // page 512: a device's DMA
            memory.Discard(0x30_0000, Page);           // page 768: a balloon discard reads back as zero
            memory.Read(0x40_0000, new byte[100]);     // reads leave no mark
            _ = memory.ReadUInt64(0x41_0000);
            Assert.True(memory.TryGetReadOnlySpan(0x42_0000, 16, out _));

            var dirty = memory.HarvestDirtyPages();
            Assert.Equal([(7UL, 2UL), (256UL, 3UL), (512UL, 1UL), (768UL, 1UL)], dirty.Runs().ToArray());
            Assert.Equal(0UL, memory.HarvestDirtyPages().Count); // harvested: gone
        }
    }

    [Fact]
    public void MarkingFromManyThreadsLosesNoPage()
    {
        var (system, vm, memory) = RegisteredMemory(64UL << 20);
        using (system) using (vm) using (memory)
        {
            memory.StartDirtyTracking();
            var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
            {
                for (ulong p = (ulong)t; p < memory.PageCount; p += 4) memory.WriteByte(p * Page, 1);
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.Equal(memory.PageCount, memory.HarvestDirtyPages().Count);
        }
    }

    [Fact]
    public void PagesOfTheHighRegionAreNumberedAfterTheLowRegion()
    {
        // 3.5 GiB: RAM below the 32-bit hole (3 GiB) and 512 MiB from 4 GiB (MAP_NORESERVE: costs nothing untouched).
        var (system, vm, memory) = RegisteredMemory(3584UL << 20);
        using (system) using (vm) using (memory)
        {
            memory.StartDirtyTracking();
            Assert.True(memory.DirtyTracking);
            memory.WriteByte(MemoryLayout.HighRamStart + 3 * Page, 1);
            var dirty = memory.HarvestDirtyPages();
            ulong expected = (3UL << 30) / Page + 3;
            Assert.Equal(expected, memory.FilePageOf(MemoryLayout.HighRamStart + 3 * Page));
            Assert.Equal([(expected, 1UL)], dirty.Runs().ToArray());
        }
    }

    [Fact]
    public void AFullSnapshotReadsOnlyPagesTheProcessTouched()
    {
        using var memory = GuestMemory.Create(64UL << 20);
        Assert.Equal(0UL, memory.PagesThatMayHoldData().Count); // nothing touched: nothing to read
        memory.WriteByte(5 * Page + 10, 1);
        memory.Fill(100 * Page, 2 * (int)Page, 7);
        Assert.Equal([(5UL, 1UL), (100UL, 2UL)], memory.PagesThatMayHoldData().Runs().ToArray());

        // What is written is exactly the non-zero pages (a touched page written back to zero is a hole).
        memory.Fill(101 * Page, (int)Page, 0);
        using var dir = new Support.TempDir();
        using var file = File.OpenHandle(dir.File("memory.bin"), FileMode.CreateNew, FileAccess.ReadWrite);
        ulong written = GuestMemoryFile.WriteSparse(memory, file, memory.PagesThatMayHoldData());
        Assert.Equal(2 * Page, written);
        Assert.Equal((long)(64UL << 20), RandomAccess.GetLength(file));
    }

    [Fact]
    public void ADiffsZeroPageOverwritesTheBaseAndPagesOutsideTheDiffKeepIt()
    {
        using var dir = new Support.TempDir();
        using var newer = GuestMemory.Create(16UL << 20);
        newer.Fill(3 * Page, (int)Page, 0x33);
        // Page 4 is in the diff and zero now; page 5 is not in the diff.
        var pages = new GuestPageBitmap(newer.PageCount);
        pages.AddRange(3, 2);
        using (var file = File.OpenHandle(dir.File("diff.bin"), FileMode.CreateNew, FileAccess.ReadWrite))
            Assert.Equal(Page, GuestMemoryFile.WriteSparse(newer, file, pages));

        using var restored = GuestMemory.Create(16UL << 20);
        restored.Fill(3 * Page, 3 * (int)Page, 0x11); // the base's pages 3, 4, 5
        var done = new GuestPageBitmap(restored.PageCount);
        using (var file = File.OpenHandle(dir.File("diff.bin"), FileMode.Open, FileAccess.Read))
            GuestMemoryFile.Overlay(restored, file, dir.File("diff.bin"), pages, done);
        Assert.All(restored.GetReadOnlySpan(3 * Page, (int)Page).ToArray(), b => Assert.Equal(0x33, b));
        Assert.All(restored.GetReadOnlySpan(4 * Page, (int)Page).ToArray(), b => Assert.Equal(0, b));
        Assert.All(restored.GetReadOnlySpan(5 * Page, (int)Page).ToArray(), b => Assert.Equal(0x11, b));
        Assert.Equal(2UL, done.Count);
    }

    /// <summary>Writes a diff memory file in which <paramref name="pages"/> hold <paramref name="value"/>.</summary>
    private static GuestPageBitmap DiffFile(string path, ulong pageCount, byte value, params (ulong First, ulong Count)[] runs)
    {
        using var source = GuestMemory.Create(pageCount * Page);
        var pages = new GuestPageBitmap(pageCount);
        foreach (var (first, count) in runs)
        {
            source.Fill(first * Page, (int)(count * Page), value);
            pages.AddRange(first, count);
        }
        using var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
        GuestMemoryFile.WriteSparse(source, file, pages);
        return pages;
    }

    [Fact]
    public void MappedOverlaysLetTheNewerDiffWinForLongAndShortRuns()
    {
        using var dir = new Support.TempDir();
        const ulong pages = 4096; // 16 MiB
        // Older diff: pages 100..163 (mapped) and 300 (copied); newer: 132..195 (mapped) and 300..301 (copied).
        var older = DiffFile(dir.File("older.bin"), pages, 0x11, (100, 64), (300, 1));
        var newer = DiffFile(dir.File("newer.bin"), pages, 0x22, (132, 64), (300, 2));
        using var memory = GuestMemory.Create(pages * Page);
        memory.Fill(0, (int)(pages * Page), 0x99); // the base
        foreach (var (name, set) in new[] { ("older.bin", older), ("newer.bin", newer) })
        {
            using var file = File.OpenHandle(dir.File(name), FileMode.Open, FileAccess.Read);
            GuestMemoryFile.OverlayMapped(memory, file, dir.File(name), set);
        }
        byte At(ulong page) => memory.ReadByte(page * Page + 17);
        Assert.Equal(0x99, At(99));
        Assert.Equal(0x11, At(100));
        Assert.Equal(0x11, At(131));
        Assert.Equal(0x22, At(132));
        Assert.Equal(0x22, At(195));
        Assert.Equal(0x99, At(196));
        Assert.Equal(0x22, At(300));
        Assert.Equal(0x22, At(301));
        Assert.Equal(0x99, At(302));
        Assert.True(memory.MappedFromFile);
    }

    [Fact]
    public void PagesFileRoundTripsAndRefusesDamage()
    {
        var bitmap = new GuestPageBitmap(1000);
        bitmap.AddRange(10, 100);
        bitmap.Add(999);
        byte[] encoded = SnapshotPagesFile.Encode(new SnapshotPages(bitmap, 0x1234_5678_9abc_def0));
        var decoded = SnapshotPagesFile.Decode(encoded, "/x/pages.bin");
        Assert.Equal(0x1234_5678_9abc_def0UL, decoded.ParentStateCrc);
        Assert.Equal(bitmap.Runs().ToArray(), decoded.Pages.Runs().ToArray());

        var damaged = (byte[])encoded.Clone();
        damaged[40] ^= 1;
        Assert.Contains("CRC-64 mismatch", Assert.Throws<SnapshotException>(() => SnapshotPagesFile.Decode(damaged, "/x/pages.bin")).Message);
        Assert.Contains("/x/pages.bin", Assert.Throws<SnapshotException>(() => SnapshotPagesFile.Decode(encoded.AsSpan(0, 20), "/x/pages.bin")).Message);
        Assert.Contains("KVMPSPGS", Assert.Throws<SnapshotException>(() => SnapshotPagesFile.Decode(new byte[64], "/x/pages.bin")).Message);
    }
}
