using System.Buffers.Binary;
using KvmPS.Storage.Qcow2;

namespace KvmPS.Storage.Tests;

/// <summary>A corpus of corrupt or unsupported headers: each must fail with a typed error naming the file.</summary>
public class Qcow2HeaderValidationTests
{
    public delegate void Patch(FileStream file);

    private static void Put32(FileStream f, long offset, uint value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, value);
        f.Position = offset;
        f.Write(b);
    }

    private static void Put64(FileStream f, long offset, ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        f.Position = offset;
        f.Write(b);
    }

    public static TheoryData<string, Type, string> Corpus() => new()
    {
        { "bad-magic", typeof(ImageCorruptException), "not a qcow2 image" },
        { "version-1", typeof(UnsupportedImageFeatureException), "unsupported version 1" },
        { "version-4", typeof(UnsupportedImageFeatureException), "unsupported version 4" },
        { "cluster-bits-8", typeof(ImageCorruptException), "cluster_bits 8" },
        { "cluster-bits-22", typeof(ImageCorruptException), "cluster_bits 22" },
        { "header-length-100", typeof(ImageCorruptException), "header_length" },
        { "refcount-order-7", typeof(ImageCorruptException), "refcount_order 7" },
        { "unknown-incompatible-bit", typeof(UnsupportedImageFeatureException), "unknown incompatible features: bit 40" },
        { "dirty-bit", typeof(UnsupportedImageFeatureException), "dirty" },
        { "corrupt-bit", typeof(ImageCorruptException), "marked corrupt" },
        { "external-data-file", typeof(UnsupportedImageFeatureException), "external data file" },
        { "extended-l2", typeof(UnsupportedImageFeatureException), "extended L2" },
        { "zstd", typeof(UnsupportedImageFeatureException), "zstd" },
        { "encrypted", typeof(UnsupportedImageFeatureException), "encrypted" },
        { "l1-beyond-eof", typeof(ImageCorruptException), "beyond the end of the file" },
        { "l1-misaligned", typeof(ImageCorruptException), "not a non-zero multiple of the cluster size" },
        { "l1-too-small", typeof(ImageCorruptException), "too small" },
        { "l1-entry-beyond-eof", typeof(ImageCorruptException), "active L1 table entry 0" },
        { "refcount-table-zero", typeof(ImageCorruptException), "refcount table offset 0" },
        { "refcount-table-beyond-eof", typeof(ImageCorruptException), "refcount table" },
        { "refcount-entry-beyond-eof", typeof(ImageCorruptException), "refcount table entry 0" },
        { "snapshots-beyond-eof", typeof(ImageCorruptException), "snapshot table" },
        { "backing-name-too-long", typeof(ImageCorruptException), "backing file name" },
        { "truncated-file", typeof(ImageCorruptException), "truncated" },
        { "extension-overrun", typeof(ImageCorruptException), "header extension" },
    };

    private static void Apply(string name, FileStream f)
    {
        switch (name)
        {
            case "bad-magic": Put32(f, 0, 0x12345678); break;
            case "version-1": Put32(f, 4, 1); break;
            case "version-4": Put32(f, 4, 4); break;
            case "cluster-bits-8": Put32(f, 20, 8); break;
            case "cluster-bits-22": Put32(f, 20, 22); break;
            case "header-length-100": Put32(f, 100, 100); break;
            case "refcount-order-7": Put32(f, 96, 7); break;
            case "unknown-incompatible-bit": Put64(f, 72, 1UL << 40); break;
            case "dirty-bit": Put64(f, 72, 1); break;
            case "corrupt-bit": Put64(f, 72, 2); break;
            case "external-data-file": Put64(f, 72, 4); break;
            case "extended-l2": Put64(f, 72, 16); break;
            case "zstd": Put64(f, 72, 8); f.Position = 104; f.WriteByte(1); break;
            case "encrypted": Put32(f, 32, 1); break;
            case "l1-beyond-eof": Put64(f, 40, 1UL << 30); break;
            case "l1-misaligned": Put64(f, 40, 3 * 65536 + 512); break;
            case "l1-too-small": Put64(f, 24, 1UL << 40); break;
            case "l1-entry-beyond-eof": Put64(f, 3 * 65536, (1UL << 63) | (1UL << 32)); break;
            case "refcount-table-zero": Put64(f, 48, 0); break;
            case "refcount-table-beyond-eof": Put64(f, 48, 1UL << 30); break;
            case "refcount-entry-beyond-eof": Put64(f, 65536, 1UL << 32); break;
            case "snapshots-beyond-eof": Put32(f, 60, 1); Put64(f, 64, 1UL << 30); break;
            case "backing-name-too-long": Put64(f, 8, 512); Put32(f, 16, 2000); break;
            case "truncated-file": f.SetLength(50); break;
            case "extension-overrun": Put32(f, 112, 0xe2792aca); Put32(f, 116, 70000); break;
            default: throw new ArgumentException(name);
        }
    }

    [Theory]
    [MemberData(nameof(Corpus))]
    public void CorruptHeaderIsRejectedWithClearError(string caseName, Type exceptionType, string messagePart)
    {
        using var dir = new TempDirectory();
        string path = dir.File(caseName + ".qcow2");
        DiskImageFactory.CreateQcow2(path, 16 << 20);
        using (var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            Apply(caseName, f);
        }
        var e = Assert.ThrowsAny<DiskImageException>(() => DiskImageFactory.Open(path, DiskImageFormat.Qcow2).Dispose());
        Assert.IsType(exceptionType, e);
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        Assert.Contains(messagePart, e.Message);
    }

    [Fact]
    public void CorruptBitStillOpensReadOnly()
    {
        using var dir = new TempDirectory();
        string path = dir.File("corrupt.qcow2");
        DiskImageFactory.CreateQcow2(path, 1 << 20);
        using (var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            Put64(f, 72, 2);
        }
        using var image = DiskImageFactory.Open(path, readOnly: true);
        Assert.Equal(1UL << 20, image.SizeBytes);
    }

    [Fact]
    public void L2EntryBeyondEndOfFileIsReportedOnRead()
    {
        using var dir = new TempDirectory();
        string path = dir.File("l2.qcow2");
        DiskImageFactory.CreateQcow2(path, 1 << 20);
        using (var image = DiskImageFactory.Open(path))
        {
            image.Write(0, new byte[512]);
        }
        // Follow L1[0] (the L1 table is at cluster 3) to the L2 table and redirect its entry 0.
        using (var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            var l1Entry = new byte[8];
            f.Position = 3 * 65536;
            f.ReadExactly(l1Entry);
            long l2Offset = (long)(BinaryPrimitives.ReadUInt64BigEndian(l1Entry) & 0x00fffffffffffe00UL);
            Assert.NotEqual(0, l2Offset);
            Put64(f, l2Offset, (1UL << 63) | (1UL << 36));
        }
        using var reopened = DiskImageFactory.Open(path);
        var e = Assert.Throws<ImageCorruptException>(() => reopened.Read(0, new byte[512]));
        Assert.Contains(path, e.Message);
        Assert.Equal(1UL << 36, e.FileOffset);
    }

    [Fact]
    public void BackingFileLoopIsDetected()
    {
        using var dir = new TempDirectory();
        string a = dir.File("a.qcow2"), b = dir.File("b.qcow2");
        DiskImageFactory.CreateQcow2(b, 1 << 20);
        DiskImageFactory.CreateQcow2(a, 1 << 20, new Qcow2CreateOptions { BackingFile = "b.qcow2" });
        // Rewrite b as an overlay of a: a -> b -> a.
        File.Delete(b);
        DiskImageFactory.CreateQcow2(b, 1 << 20, new Qcow2CreateOptions { BackingFile = "a.qcow2" });
        var e = Assert.Throws<BackingChainLoopException>(() => DiskImageFactory.Open(a).Dispose());
        Assert.Equal(a, e.Path);
        Assert.Contains("loops", e.Message);
        Assert.Equal(3, e.Chain.Count);
    }

    [Fact]
    public void SelfReferencingBackingFileIsDetected()
    {
        using var dir = new TempDirectory();
        string a = dir.File("self.qcow2"), tmp = dir.File("tmp.raw");
        DiskImageFactory.CreateRaw(tmp, 1 << 20);
        DiskImageFactory.CreateQcow2(a, 1 << 20, new Qcow2CreateOptions { BackingFile = "tmp.raw" });
        // Patch the stored name "tmp.raw" into "self.qcow2"-length-compatible name via a symlink.
        File.Delete(tmp);
        File.CreateSymbolicLink(tmp, a);
        Assert.Throws<BackingChainLoopException>(() => DiskImageFactory.Open(a, DiskImageFormat.Qcow2).Dispose());
    }

    [Fact]
    public void MissingBackingFileNamesIt()
    {
        using var dir = new TempDirectory();
        string a = dir.File("top.qcow2"), b = dir.File("base.raw");
        DiskImageFactory.CreateRaw(b, 1 << 20);
        DiskImageFactory.CreateQcow2(a, 0, new Qcow2CreateOptions { BackingFile = "base.raw" });
        File.Delete(b);
        var e = Assert.ThrowsAny<DiskImageException>(() => DiskImageFactory.Open(a).Dispose());
        Assert.Contains(b, e.Message);
    }
}
