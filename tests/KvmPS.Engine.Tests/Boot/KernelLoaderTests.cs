using KvmPS.Vm;
using KvmPS.Vm.Boot;
using static KvmPS.Engine.Tests.Boot.KernelImages;

namespace KvmPS.Engine.Tests.Boot;

/// <summary>The bzImage and ELF loaders and initrd placement on real (mmap'd) guest memory, without KVM.</summary>
public class KernelLoaderTests
{
    private const string Path = "/images/kernel";

    // ---- bzImage ----

    [Theory]
    [InlineData(4)]
    [InlineData(27)]
    [InlineData(0)] // 0 means 4 (old boot protocol rule)
    public void BzImageLoadsTheProtectedModeCodeAfterTheSetupSectors(byte setupSects)
    {
        using var memory = GuestMemory.Create(64UL << 20);
        byte[] image = BzImage(setupSects: setupSects, kernelBytes: 0x3000);
        int setupBytes = ((setupSects == 0 ? 4 : setupSects) + 1) * 512;

        var kernel = KernelLoader.Load(memory, Path, image);

        Assert.Equal(KernelFormat.BzImage, kernel.Format);
        Assert.Equal(MemoryLayout.KernelLoadAddress, kernel.LoadStart);
        Assert.Equal(MemoryLayout.KernelLoadAddress + 0x200, kernel.EntryAddress); // 64-bit entry: startup_64
        Assert.Equal(MemoryLayout.KernelLoadAddress + 0x20_0000, kernel.LoadEnd);  // init_size exceeds the file
        byte[] loaded = new byte[0x3000];
        memory.Read(MemoryLayout.KernelLoadAddress, loaded);
        Assert.Equal(image[setupBytes..], loaded);
    }

    [Fact]
    public void BzImageKeepsTheSetupHeaderForTheZeroPage()
    {
        using var memory = GuestMemory.Create(64UL << 20);
        byte[] image = BzImage(initrdAddrMax: 0x1fff_ffff);
        var kernel = KernelLoader.Load(memory, Path, image);
        Assert.NotNull(kernel.SetupHeader);
        Assert.Equal(image[0x1f1..HeaderEnd], kernel.SetupHeader);
        Assert.Equal(0x1fff_ffffUL, kernel.InitrdAddressMax);
    }

    [Fact]
    public void NonRelocatableBzImageLoadsAtItsPreferredAddress()
    {
        using var memory = GuestMemory.Create(64UL << 20);
        var kernel = KernelLoader.Load(memory, Path, BzImage(relocatable: false, preferredAddress: 0x100_0000));
        Assert.Equal(0x100_0000UL, kernel.LoadStart);
        Assert.Equal(0x100_0200UL, kernel.EntryAddress);
    }

    [Theory]
    [InlineData((ushort)0x020b)]
    [InlineData((ushort)0x0206)]
    public void BzImageWithAnOldBootProtocolIsRefused(ushort version)
    {
        using var memory = GuestMemory.Create(64UL << 20);
        var e = Assert.Throws<BootImageException>(() => KernelLoader.Load(memory, Path, BzImage(version: version)));
        Assert.Equal(Path, e.ImagePath);
        Assert.Contains("too old", e.Message);
        Assert.Contains("2.12", e.Message);
    }

    [Fact]
    public void BzImageWithoutA64BitEntryIsRefused()
    {
        using var memory = GuestMemory.Create(64UL << 20);
        var e = Assert.Throws<BootImageException>(() => KernelLoader.Load(memory, Path, BzImage(xloadflags: 0x2)));
        Assert.Contains("XLF_KERNEL_64", e.Message);
    }

    [Fact]
    public void BzImageLargerThanGuestMemoryIsRefused()
    {
        using var memory = GuestMemory.Create(16UL << 20);
        var e = Assert.Throws<BootImageException>(() => KernelLoader.Load(memory, Path, BzImage(initSize: 0x100_0000)));
        Assert.Contains("too large for guest memory", e.Message);
    }

    [Fact]
    public void BzImageWithoutProtectedModeCodeIsTruncated()
    {
        using var memory = GuestMemory.Create(64UL << 20);
        byte[] image = BzImage(setupSects: 4, kernelBytes: 0x1000)[..(5 * 512)];
        var e = Assert.Throws<BootImageException>(() => KernelLoader.Load(memory, Path, image));
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void AnythingElseIsNotAKernel()
    {
        using var memory = GuestMemory.Create(16UL << 20);
        var e = Assert.Throws<BootImageException>(() => KernelLoader.Load(memory, Path, new byte[4096]));
        Assert.Contains("not a kernel", e.Message);
    }

    // ---- ELF ----

    [Fact]
    public void ElfSegmentsLoadAtTheirPhysicalAddressesWithBssZeroed()
    {
        using var memory = GuestMemory.Create(64UL << 20);
        memory.Fill(0x10_0000, 0x20_0000, 0xAA);
        byte[] text = Pattern(0x800, 1), data = Pattern(0x300, 2);
        byte[] image = Elf(0x10_0010, [
            new Segment(1, 0x10_0000, text, 0x2000),
            new Segment(4, 0x18_0000, Pattern(0x20, 3), 0x20), // PT_NOTE: not loaded
            new Segment(1, 0x20_0000, data, 0x300),
        ]);

        var kernel = KernelLoader.Load(memory, Path, image);

        Assert.Equal(KernelFormat.Elf64, kernel.Format);
        Assert.Null(kernel.SetupHeader);
        Assert.Equal(0x10_0010UL, kernel.EntryAddress);
        Assert.Equal(0x10_0000UL, kernel.LoadStart);
        Assert.Equal(0x20_0300UL, kernel.LoadEnd);
        byte[] buf = new byte[0x2000];
        memory.Read(0x10_0000, buf);
        Assert.Equal(text, buf[..0x800]);
        Assert.All(buf[0x800..], b => Assert.Equal(0, b));
        Assert.Equal(0xAA, memory.ReadByte(0x18_0000));
        byte[] buf2 = new byte[0x300];
        memory.Read(0x20_0000, buf2);
        Assert.Equal(data, buf2);
    }

    [Fact]
    public void OnFreshMemoryTheBssIsLeftUnwrittenAndReadsAsZero()
    {
        using var memory = GuestMemory.Create(64UL << 20);
        byte[] text = Pattern(0x800, 1);
        byte[] image = Elf(0x10_0010, [new Segment(1, 0x10_0000, text, 0x100_0000)]); // 16 MiB, nearly all .bss

        KernelLoader.Load(memory, Path, image, memoryIsZero: true);

        // The .bss was not written, so its pages were not faulted in (a zero fill makes all 4096 resident; with
        // transparent huge pages on, the first write may bring in one 2 MiB page).
        Assert.InRange(ResidentPages(memory, 0x10_0000, 0x100_0000), 1, 1024);
        byte[] buf = new byte[0x100_0000];
        memory.Read(0x10_0000, buf);
        Assert.Equal(text, buf[..0x800]);
        Assert.All(buf[0x800..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void OnFreshMemoryABssOverAnEarlierSegmentStillZeroesIt()
    {
        using var memory = GuestMemory.Create(64UL << 20);
        // A malformed image: the second segment's zero tail covers the first segment's bytes, as on memory that held data.
        byte[] image = Elf(0x10_0000, [
            new Segment(1, 0x10_1000, Pattern(0x1000, 1), 0x1000),
            new Segment(1, 0x10_0000, Pattern(0x100, 2), 0x3000),
        ]);

        KernelLoader.Load(memory, Path, image, memoryIsZero: true);

        byte[] buf = new byte[0x2f00];
        memory.Read(0x10_0100, buf);
        Assert.All(buf, b => Assert.Equal(0, b));
    }

    private static int ResidentPages(GuestMemory memory, ulong gpa, int length)
    {
        var region = memory.Regions.Single(r => gpa >= r.GuestAddress && gpa + (ulong)length <= r.GuestAddress + r.SizeBytes);
        ulong firstPage = (ulong)(region.HostAddress + (nint)(gpa - region.GuestAddress)) / MemoryLayout.PageSize;
        var entries = new ulong[length / (int)MemoryLayout.PageSize];
        var (handle, owned) = ProcessPagemap.Acquire();
        try { ProcessPagemap.Read(handle, firstPage, entries); }
        finally { if (owned) handle.Dispose(); }
        return entries.Count(e => (e & ProcessPagemap.Present) != 0);
    }

    private static BootImageException ElfError(byte[] image, ulong memoryBytes = 64UL << 20)
    {
        using var memory = GuestMemory.Create(memoryBytes);
        var e = Assert.Throws<BootImageException>(() => KernelLoader.Load(memory, Path, image));
        Assert.Equal(Path, e.ImagePath);
        return e;
    }

    private static byte[] OneSegment(ulong paddr = 0x10_0000, int fileBytes = 0x100, ulong memsz = 0x100) =>
        Elf(paddr, [new Segment(1, paddr, Pattern(fileBytes, 5), memsz)]);

    [Fact]
    public void Elf32IsRefused() => Assert.Contains("32-bit", ElfError(Elf(0x10_0000, [new Segment(1, 0x10_0000, [1], 1)], elfClass: 1)).Message);

    [Fact]
    public void ElfForAnotherMachineIsRefused() =>
        Assert.Contains("wrong architecture", ElfError(Elf(0x10_0000, [new Segment(1, 0x10_0000, [1], 1)], machine: 183)).Message);

    [Theory]
    [InlineData((ushort)1)] // ET_REL
    [InlineData((ushort)3)] // ET_DYN
    public void ElfThatIsNotAnExecutableIsRefused(ushort type) =>
        Assert.Contains("ET_EXEC", ElfError(Elf(0x10_0000, [new Segment(1, 0x10_0000, [1], 1)], type: type)).Message);

    [Fact]
    public void ElfSegmentBelow1MiBIsRefused() => Assert.Contains("below 1 MiB", ElfError(OneSegment(paddr: 0x8000)).Message);

    [Fact]
    public void ElfLargerThanGuestMemoryIsRefused() =>
        Assert.Contains("too large for guest memory", ElfError(OneSegment(memsz: 64UL << 20), memoryBytes: 32UL << 20).Message);

    [Fact]
    public void ElfWithSegmentDataBeyondTheFileIsTruncated()
    {
        byte[] image = OneSegment(fileBytes: 0x1000, memsz: 0x1000);
        Assert.Contains("truncated", ElfError(image[..(image.Length - 0x10)]).Message);
    }

    [Fact]
    public void ElfWithProgramHeadersBeyondTheFileIsTruncated()
    {
        byte[] image = OneSegment();
        image[56] = 200; // e_phnum
        Assert.Contains("truncated", ElfError(image).Message);
    }

    [Fact]
    public void ElfWithoutLoadableSegmentsIsRefused() =>
        Assert.Contains("no loadable", ElfError(Elf(0x10_0000, [new Segment(4, 0x10_0000, [1], 1)])).Message);

    [Fact]
    public void ElfEntryOutsideTheSegmentsIsRefused() =>
        Assert.Contains("entry point", ElfError(Elf(0x50_0000, [new Segment(1, 0x10_0000, [1, 2], 2)])).Message);

    // ---- initrd ----

    private static string TempFile(byte[] content)
    {
        string path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"kvmps-initrd-{Guid.NewGuid():N}");
        File.WriteAllBytes(path, content);
        return path;
    }

    private static LoadedKernel FakeKernel(ulong loadEnd, ulong initrdMax = 0x37ff_ffff) =>
        new(KernelFormat.Elf64, 0x10_0000, 0x10_0000, loadEnd, null, initrdMax);

    [Fact]
    public void InitrdGoesPageAlignedToTheTopOfLowMemory()
    {
        using var memory = GuestMemory.Create(64UL << 20);
        byte[] content = Pattern(10_000, 9);
        string path = TempFile(content);
        try
        {
            var (address, size) = KernelLoader.LoadInitrd(memory, FakeKernel(0x20_0000), path);
            Assert.Equal(10_000UL, size);
            Assert.Equal(((64UL << 20) - 10_000) & ~0xfffUL, address);
            byte[] back = new byte[content.Length];
            memory.Read(address, back);
            Assert.Equal(content, back);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void InitrdStaysBelowTheKernelsInitrdAddressMax()
    {
        using var memory = GuestMemory.Create(64UL << 20);
        string path = TempFile(Pattern(0x1000, 1));
        try
        {
            var (address, size) = KernelLoader.LoadInitrd(memory, FakeKernel(0x20_0000, initrdMax: 0x1ff_ffff), path);
            Assert.Equal(0x200_0000UL - 0x1000, address);
            Assert.True(address + size <= 0x200_0000);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void InitrdHighAboveTheMmioHoleIsNotUsed()
    {
        // 5 GiB: low RAM ends at 3 GiB; the initrd must stay there (below initrd_addr_max), not in RAM above 4 GiB.
        using var memory = GuestMemory.Create(5UL << 30);
        string path = TempFile(Pattern(0x2000, 1));
        try
        {
            var (address, _) = KernelLoader.LoadInitrd(memory, FakeKernel(0x20_0000, initrdMax: 0xffff_ffff), path);
            Assert.Equal(MemoryLayout.MmioHoleStart - 0x2000, address);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void InitrdOverlappingTheKernelIsRefused()
    {
        using var memory = GuestMemory.Create(32UL << 20);
        string path = TempFile(new byte[8 << 20]);
        try
        {
            var e = Assert.Throws<BootImageException>(() => KernelLoader.LoadInitrd(memory, FakeKernel(28UL << 20), path));
            Assert.Equal(path, e.ImagePath);
            Assert.Contains("overlap", e.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void InitrdThatCannotBeReadIsNamed()
    {
        using var memory = GuestMemory.Create(32UL << 20);
        var e = Assert.Throws<BootImageException>(() => KernelLoader.LoadInitrd(memory, FakeKernel(0x20_0000), "/nonexistent/initrd.img"));
        Assert.Equal("/nonexistent/initrd.img", e.ImagePath);
    }
}
