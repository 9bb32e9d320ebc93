using System.Buffers.Binary;
using KvmPS.Storage;
using KvmPS.Storage.Qcow2;

namespace KvmPS.Fuzz.Targets;

/// <summary>
/// qcow2 metadata parsing: the input is an image file (in a temp file on tmpfs when there is one), opened as
/// <c>kvmps-vmm</c> and <c>qemu-img snapshot</c> open it, then read, listed, written and flushed a little so the
/// L1/L2 and refcount tables the header points at are walked. Expected: DiskImageException and its kinds
/// (ImageCorrupt, UnsupportedImageFeature, ...), which is how a bad image is refused.
/// </summary>
internal sealed class Qcow2Target : IFuzzTarget
{
    public string Name => "qcow2";
    public string Description => "qcow2 image bytes (KvmPS.Storage Qcow2Image: header, extensions, L1/L2, refcounts, snapshot table)";

    private readonly string _path = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"kvmps-fuzz-{Environment.ProcessId}.qcow2");
    private readonly byte[] _buffer = new byte[4096];

    public void Run(ReadOnlySpan<byte> input)
    {
        using (var f = new FileStream(_path, FileMode.Create, FileAccess.Write)) f.Write(input);
        try
        {
            using var file = ImageFile.Open(_path, writable: true);
            using var image = Qcow2Image.Open(file, (_, _) => null);
            _ = image.ListSnapshots();
            if (image.SizeBytes == 0) return;
            // A few sector reads spread over the virtual disk, one write and a flush (allocation, refcount updates).
            Span<ulong> offsets = [0, image.SizeBytes / 3, image.SizeBytes / 2, image.SizeBytes - 1];
            foreach (ulong at in offsets)
            {
                ulong sector = at & ~511UL;
                int n = (int)Math.Min(512UL, image.SizeBytes - sector);
                image.Read(sector, _buffer.AsSpan(0, n));
            }
            if (image.SizeBytes >= 512)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(_buffer, 0x6b766d707366757aUL);
                image.Write(image.SizeBytes / 2 & ~511UL, _buffer.AsSpan(0, 512));
                image.Flush();
            }
        }
        catch (DiskImageException) { }
        catch (InvalidOperationException e) when (e.Message.Contains("without its backing file", StringComparison.Ordinal)) { }
    }

    public IEnumerable<(string, byte[])> Seeds()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kvmps-fuzz-seeds-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            foreach (var (name, size, cluster, refcountBits) in new (string, ulong, int, int)[]
            {
                ("c512-1m", 1UL << 20, 512, 16),
                ("c512-64k", 64UL << 10, 512, 16),
                ("c1k-refcount1", 1UL << 20, 1024, 1),
                ("c1k-refcount64", 1UL << 20, 1024, 64),
                ("c4k-2m", 2UL << 20, 4096, 8),
            })
            {
                string path = Path.Combine(dir, name + ".qcow2");
                DiskImageFactory.CreateQcow2(path, size, new Qcow2CreateOptions { ClusterSizeBytes = cluster, RefcountBits = refcountBits });
                yield return (name + ".qcow2", File.ReadAllBytes(path));
                // The same image with data in a few clusters and a snapshot (a snapshot table, a second L1).
                using (var image = DiskImageFactory.OpenQcow2(path))
                {
                    var data = new byte[4096];
                    data.AsSpan().Fill(0x5a);
                    image.Write(0, data);
                    image.Write(size / 2, data);
                    if (refcountBits > 1) image.CreateSnapshot("s1");
                    image.Write(4096, data);
                }
                yield return (name + "-data.qcow2", File.ReadAllBytes(path));
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
