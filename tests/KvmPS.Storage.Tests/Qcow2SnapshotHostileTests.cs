using System.Buffers.Binary;
using KvmPS.Storage.Qcow2;

namespace KvmPS.Storage.Tests;

/// <summary>
/// Images whose snapshot table or snapshot L1/L2 tables are corrupt or hostile: refused with
/// <see cref="ImageCorruptException"/> naming the image, without large allocations and without
/// changing the file.
/// </summary>
public class Qcow2SnapshotHostileTests
{
    private const int ClusterBytes = 4096;

    // Header fields (qcow2 spec).
    private const int L1TableOffsetField = 40;
    private const int RefcountTableOffsetField = 48;
    private const int NbSnapshotsField = 60;
    private const int SnapshotsOffsetField = 64;

    // Snapshot table entry fields.
    private const int EntryL1Offset = 0;
    private const int EntryL1Size = 8;
    private const int EntryIdSize = 12;
    private const int EntryNameSize = 14;
    private const int EntryExtraSize = 36;

    /// <summary>A valid image with data and one snapshot "s1".</summary>
    private static string ImageWithSnapshot(TempDirectory dir)
    {
        string path = dir.File("hostile.qcow2");
        DiskImageFactory.CreateQcow2(path, 1 << 20, new Qcow2CreateOptions { ClusterSizeBytes = ClusterBytes });
        using var image = DiskImageFactory.OpenQcow2(path);
        var data = new byte[64 << 10];
        new Random(1).NextBytes(data);
        image.Write(0, data);
        image.CreateSnapshot("s1", "one");
        return path;
    }

    private static ulong ReadU64(string path, long offset)
    {
        using var f = File.OpenRead(path);
        var b = new byte[8];
        f.Position = offset;
        f.ReadExactly(b);
        return BinaryPrimitives.ReadUInt64BigEndian(b);
    }

    private static void Patch(string path, long offset, ulong value, int bytes)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        using var f = File.OpenWrite(path);
        f.Position = offset;
        f.Write(b, 8 - bytes, bytes);
    }

    private static long SnapshotTable(string path) => (long)ReadU64(path, SnapshotsOffsetField);

    private static ImageCorruptException AssertOpenRefusedCheaply(string path)
    {
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ImageCorruptException>(() => DiskImageFactory.OpenQcow2(path, readOnly: true));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        Assert.True(allocated < 16 << 20, $"refusing the image allocated {allocated} bytes");
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        // Management's by-path listing refuses it the same way.
        Assert.Throws<ImageCorruptException>(() => DiskSnapshots.List(path));
        return e;
    }

    [Theory]
    [InlineData(0xFFFF_FFFFu)]
    [InlineData(65_537u)]
    public void SnapshotCountsAboveTheLimitAreRefused(uint count)
    {
        using var dir = new TempDirectory();
        string path = ImageWithSnapshot(dir);
        Patch(path, NbSnapshotsField, count, 4);
        Assert.Contains("snapshots", AssertOpenRefusedCheaply(path).Message);
    }

    [Fact]
    public void ASnapshotCountTheFileCannotHoldIsRefused()
    {
        using var dir = new TempDirectory();
        string path = ImageWithSnapshot(dir);
        Patch(path, NbSnapshotsField, 65_536, 4);
        Assert.Contains("beyond the end of the file", AssertOpenRefusedCheaply(path).Message);
    }

    [Theory]
    [InlineData(1UL << 40)] // far beyond the end of the file
    [InlineData(4096UL + 8)] // not cluster aligned
    [InlineData(0UL)]       // the header
    public void SnapshotTableOffsetsOutsideTheFileOrMisalignedAreRefused(ulong offset)
    {
        using var dir = new TempDirectory();
        string path = ImageWithSnapshot(dir);
        Patch(path, SnapshotsOffsetField, offset, 8);
        AssertOpenRefusedCheaply(path);
    }

    [Theory]
    [InlineData(EntryL1Offset, 8, 1UL << 40)]        // L1 table beyond the end of the file
    [InlineData(EntryL1Offset, 8, 4096UL + 512)]     // misaligned L1 table
    [InlineData(EntryL1Size, 4, 0x7FFF_FFFFUL)]      // L1 table of 16 GiB
    [InlineData(EntryExtraSize, 4, 0xFFFF_FFFFUL)]   // 4 GiB of extra data
    [InlineData(EntryExtraSize, 4, 1025UL)]          // just over QEMU's extra-data limit
    [InlineData(EntryIdSize, 2, 0xFFFFUL)]           // ID running past the end of the file
    [InlineData(EntryNameSize, 2, 0xFFFFUL)]         // name running past the end of the file
    public void CorruptSnapshotEntriesAreRefused(int field, int bytes, ulong value)
    {
        using var dir = new TempDirectory();
        string path = ImageWithSnapshot(dir);
        // Keep the file short so that 64 KiB of ID or name cannot fit behind the table.
        Patch(path, SnapshotTable(path) + field, value, bytes);
        var e = AssertOpenRefusedCheaply(path);
        Assert.Contains("snapshot", e.Message);
    }

    [Theory]
    [InlineData(RefcountTableOffsetField)]
    [InlineData(L1TableOffsetField)]
    [InlineData(SnapshotsOffsetField)]
    public void SnapshotL1TablesOnTopOfImageMetadataAreRefused(int headerField)
    {
        using var dir = new TempDirectory();
        string path = ImageWithSnapshot(dir);
        Patch(path, SnapshotTable(path) + EntryL1Offset, ReadU64(path, headerField), 8);
        var e = AssertOpenRefusedCheaply(path);
        Assert.Contains("overlaps", e.Message);
        Assert.Contains("'s1'", e.Message);
    }

    [Theory]
    [InlineData("beyond")]
    [InlineData("refcount table")]
    [InlineData("active L1")]
    [InlineData("snapshot table")]
    public void SnapshotTreesPointingOutsideTheFileOrAtMetadataAreRefusedWithoutChangingTheImage(string target)
    {
        using var dir = new TempDirectory();
        string path = ImageWithSnapshot(dir);
        long snapshotL1 = (long)ReadU64(path, SnapshotTable(path) + EntryL1Offset);
        ulong l2 = target switch
        {
            "beyond" => 1UL << 40,
            "refcount table" => ReadU64(path, RefcountTableOffsetField),
            "active L1" => ReadU64(path, L1TableOffsetField),
            _ => ReadU64(path, SnapshotsOffsetField),
        };
        // Entry 0 of the snapshot's L1 table now names something that is not an L2 table of its own.
        Patch(path, snapshotL1, l2, 8);
        byte[] before = File.ReadAllBytes(path);
        using (var image = DiskImageFactory.OpenQcow2(path))
        {
            Assert.True(image.HasSnapshot("s1")); // listing does not read the tree
            var revert = Assert.Throws<ImageCorruptException>(() => image.RevertToSnapshot("s1"));
            Assert.Contains(path, revert.Message);
            Assert.Throws<ImageCorruptException>(() => image.DeleteSnapshot("s1"));
            Assert.True(image.HasSnapshot("s1"));
        }
        Assert.Equal(before, File.ReadAllBytes(path));
    }

    [Fact]
    public void AnUntouchedImageStillOpensSoTheCorruptionsAboveAreWhatIsRefused()
    {
        using var dir = new TempDirectory();
        string path = ImageWithSnapshot(dir);
        using var image = DiskImageFactory.OpenQcow2(path);
        image.RevertToSnapshot("s1");
        image.DeleteSnapshot("s1");
    }
}
