using System.Buffers.Binary;
using System.Diagnostics;
using KvmPS.Engine.Tests.Boot;

namespace KvmPS.Engine.Tests.Linux;

/// <summary>The vmlinux extraction on synthetic bzImages (no installed kernel needed; the round trip needs the xz tool).</summary>
public class VmlinuxExtractorTests
{
    /// <summary>A bzImage whose payload (after the setup sectors, at payload_offset) is <paramref name="payload"/>.</summary>
    private static byte[] BzImageWithPayload(byte[] payload, byte setupSects = 4, uint payloadOffset = 0x100)
    {
        byte[] header = KernelImages.BzImage(setupSects: setupSects, kernelBytes: 0);
        byte[] image = new byte[header.Length + payloadOffset + payload.Length + 0x40];
        header.CopyTo(image, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x248), payloadOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x24c), (uint)payload.Length);
        payload.CopyTo(image, header.Length + (int)payloadOffset);
        return image;
    }

    [Fact]
    public void PayloadIsFoundRelativeToTheProtectedModeCodeAndTheSizeTrailerIsStripped()
    {
        byte[] xz = [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 1, 2, 3, (byte)'Y', (byte)'Z'];
        byte[] payload = [.. xz, 0x34, 0x12, 0, 0];
        byte[] image = BzImageWithPayload(payload, setupSects: 9, payloadOffset: 0x2cc);
        Assert.Equal(xz, VmlinuxExtractor.PayloadOf("k", image, out uint? size));
        Assert.Equal(0x1234u, size);
    }

    [Fact]
    public void NonXzPayloadIsRefused()
    {
        byte[] image = BzImageWithPayload([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0]); // gzip
        var e = Assert.Throws<VmlinuxExtractionException>(() => VmlinuxExtractor.PayloadOf("k", image, out _));
        Assert.Contains("not xz", e.Message);
    }

    [Fact]
    public void PayloadBeyondTheFileIsTruncated()
    {
        byte[] image = BzImageWithPayload([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x24c), 0x10_0000);
        Assert.Contains("truncated", Assert.Throws<VmlinuxExtractionException>(() => VmlinuxExtractor.PayloadOf("k", image, out _)).Message);
    }

    [Fact]
    public void NotABzImageIsRefused() =>
        Assert.Contains("not a Linux bzImage", Assert.Throws<VmlinuxExtractionException>(() => VmlinuxExtractor.PayloadOf("k", new byte[4096], out _)).Message);

    [Fact]
    public void MissingKernelIsNamed() =>
        Assert.Contains("/nonexistent/vmlinuz", Assert.Throws<VmlinuxExtractionException>(() => VmlinuxExtractor.ExtractCached("/nonexistent/vmlinuz")).Message);

    [Fact]
    public void RoundTripThroughXzIsCached()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"kvmps-extract-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            byte[] elf = KernelImages.Elf(0x100_0000, [new KernelImages.Segment(1, 0x100_0000, KernelImages.Pattern(0x4000, 3), 0x4000)]);
            string raw = Path.Combine(dir, "vmlinux.raw");
            File.WriteAllBytes(raw, elf);
            var psi = new ProcessStartInfo("xz", $"--check=crc32 -kzc {raw}") { RedirectStandardOutput = true };
            byte[] compressed;
            using (var p = Process.Start(psi)!)
            using (var ms = new MemoryStream())
            {
                p.StandardOutput.BaseStream.CopyTo(ms);
                p.WaitForExit();
                Assert.Equal(0, p.ExitCode);
                compressed = ms.ToArray();
            }
            byte[] trailer = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(trailer, (uint)elf.Length);
            string bzImage = Path.Combine(dir, "vmlinuz-test");
            File.WriteAllBytes(bzImage, BzImageWithPayload([.. compressed, .. trailer]));

            string cache = Path.Combine(dir, "cache");
            string vmlinux = VmlinuxExtractor.ExtractCached(bzImage, cache);
            Assert.Equal(elf, File.ReadAllBytes(vmlinux));
            Assert.StartsWith(cache, vmlinux);
            Assert.Contains("vmlinuz-test", Path.GetFileName(vmlinux));

            var written = File.GetLastWriteTimeUtc(vmlinux);
            Thread.Sleep(20);
            Assert.Equal(vmlinux, VmlinuxExtractor.ExtractCached(bzImage, cache)); // second call: from the cache
            Assert.Equal(written, File.GetLastWriteTimeUtc(vmlinux));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
