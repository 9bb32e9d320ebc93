using System.Buffers.Binary;
using System.Diagnostics;

namespace KvmPS.Engine.Tests.Linux;

/// <summary>A kernel that cannot be turned into a bootable vmlinux (missing file, missing tool, unexpected format).</summary>
public sealed class VmlinuxExtractionException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Extracts the ELF <c>vmlinux</c> from a Linux bzImage whose payload is xz-compressed (Debian's kernels), so it can
/// be booted directly as an ELF64 kernel without running the (slow) in-guest decompressor.
/// </summary>
/// <remarks>
/// The setup header (Documentation/arch/x86/boot.rst) gives <c>payload_offset</c> (0x248) and <c>payload_length</c>
/// (0x24c), both relative to the protected-mode code at <c>(setup_sects + 1) * 512</c>. The kernel build appends the
/// uncompressed size as 4 little-endian bytes after the xz stream; that trailer is stripped (xz would call it corrupt
/// data) and checked against the decompressed length. Results are cached in
/// <c>$KVMPS_TEST_CACHE</c> (default <c>$TMPDIR/kvmps-test-cache</c>) keyed by the kernel's file name and size.
/// </remarks>
public static class VmlinuxExtractor
{
    private static readonly byte[] XzMagic = [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00];
    private const uint HdrSMagic = 0x53726448; // "HdrS"
    private const int SetupSectsOffset = 0x1f1, HeaderMagicOffset = 0x202, VersionOffset = 0x206;
    private const int PayloadOffsetOffset = 0x248, PayloadLengthOffset = 0x24c;
    private static readonly TimeSpan XzTimeout = TimeSpan.FromMinutes(5);

    /// <summary>The installed distribution kernels (<c>/boot/vmlinuz-*</c>), newest file name last.</summary>
    public static IReadOnlyList<string> InstalledKernels(string bootDirectory = "/boot")
    {
        if (!Directory.Exists(bootDirectory)) return [];
        var found = Directory.GetFiles(bootDirectory, "vmlinuz-*").Where(f => new FileInfo(f).Length > 0).ToList();
        found.Sort(StringComparer.Ordinal);
        return found;
    }

    public static string CacheDirectory =>
        Environment.GetEnvironmentVariable("KVMPS_TEST_CACHE") is { Length: > 0 } dir ? dir : Path.Combine(Path.GetTempPath(), "kvmps-test-cache");

    /// <summary>Returns the path of the extracted vmlinux for <paramref name="bzImagePath"/>, extracting it on first use.</summary>
    public static string ExtractCached(string bzImagePath, string? cacheDirectory = null)
    {
        if (!File.Exists(bzImagePath))
            throw new VmlinuxExtractionException($"{bzImagePath}: the kernel image does not exist (install one with 'apt-get install linux-image-amd64').");
        var info = new FileInfo(bzImagePath);
        string dir = cacheDirectory ?? CacheDirectory;
        Directory.CreateDirectory(dir);
        string target = Path.Combine(dir, $"vmlinux-{info.Name}-{info.Length}");
        if (File.Exists(target) && IsElf64(target)) return target;

        byte[] payload = PayloadOf(bzImagePath, File.ReadAllBytes(bzImagePath), out uint? expectedSize);
        string partial = $"{target}.{Environment.ProcessId}.partial";
        try
        {
            Decompress(payload, partial);
            long length = new FileInfo(partial).Length;
            if (expectedSize is { } size && length != size)
                throw new VmlinuxExtractionException($"{bzImagePath}: xz produced {length} bytes but the kernel's size trailer says {size}.");
            if (!IsElf64(partial))
                throw new VmlinuxExtractionException($"{bzImagePath}: the decompressed payload is not an ELF64 x86-64 vmlinux.");
            File.Move(partial, target, overwrite: true);
        }
        finally
        {
            if (File.Exists(partial)) File.Delete(partial);
        }
        return target;
    }

    /// <summary>The xz payload of a bzImage (without the kernel's uncompressed-size trailer).</summary>
    public static byte[] PayloadOf(string path, ReadOnlySpan<byte> image, out uint? uncompressedSize)
    {
        uncompressedSize = null;
        if (image.Length < 0x250 || BinaryPrimitives.ReadUInt32LittleEndian(image[HeaderMagicOffset..]) != HdrSMagic)
            throw new VmlinuxExtractionException($"{path}: not a Linux bzImage (no 'HdrS' setup header).");
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(image[VersionOffset..]);
        if (version < 0x0208)
            throw new VmlinuxExtractionException($"{path}: boot protocol {version >> 8}.{version & 0xff} has no payload_offset (2.08 or newer needed).");
        int setupSects = image[SetupSectsOffset] == 0 ? 4 : image[SetupSectsOffset];
        long protectedMode = (setupSects + 1) * 512L;
        long offset = protectedMode + BinaryPrimitives.ReadUInt32LittleEndian(image[PayloadOffsetOffset..]);
        long length = BinaryPrimitives.ReadUInt32LittleEndian(image[PayloadLengthOffset..]);
        if (length < XzMagic.Length || offset + length > image.Length)
            throw new VmlinuxExtractionException($"{path}: truncated bzImage: the payload (0x{offset:x}+0x{length:x}) lies beyond the end of the file.");
        var payload = image.Slice((int)offset, (int)length);
        if (!payload.StartsWith(XzMagic))
            throw new VmlinuxExtractionException($"{path}: the payload is not xz-compressed (starts {Convert.ToHexString(payload[..6])}); only xz kernels are supported.");
        // An xz stream ends with the footer magic "YZ"; the kernel build appends the uncompressed size after it.
        if (length >= 6 && payload[^6] == (byte)'Y' && payload[^5] == (byte)'Z')
        {
            uncompressedSize = BinaryPrimitives.ReadUInt32LittleEndian(payload[^4..]);
            payload = payload[..^4];
        }
        return payload.ToArray();
    }

    public static bool IsElf64(string path)
    {
        Span<byte> header = stackalloc byte[20];
        using var f = File.OpenRead(path);
        if (f.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) < header.Length) return false;
        return header[0] == 0x7f && header[1] == (byte)'E' && header[2] == (byte)'L' && header[3] == (byte)'F'
            && header[4] == 2 && BinaryPrimitives.ReadUInt16LittleEndian(header[18..]) == 62;
    }

    private static void Decompress(byte[] payload, string outputPath)
    {
        var psi = new ProcessStartInfo("xz", "-dc")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        Process process;
        try { process = Process.Start(psi) ?? throw new VmlinuxExtractionException("xz could not be started."); }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new VmlinuxExtractionException("the 'xz' tool is missing: install it with 'apt-get install xz-utils'.", e);
        }
        using (process)
        {
            var stderr = process.StandardError.ReadToEndAsync();
            Task copyOut;
            using (var output = File.Create(outputPath))
            {
                copyOut = process.StandardOutput.BaseStream.CopyToAsync(output);
                try
                {
                    process.StandardInput.BaseStream.Write(payload);
                    process.StandardInput.Close();
                }
                catch (IOException) { /* xz exited early; its status and stderr tell why */ }
                if (!copyOut.Wait(XzTimeout))
                {
                    try { process.Kill(); } catch (InvalidOperationException) { }
                    throw new VmlinuxExtractionException($"xz -dc did not finish within {XzTimeout}.");
                }
            }
            process.WaitForExit();
            if (process.ExitCode != 0)
                throw new VmlinuxExtractionException($"xz -dc failed with status {process.ExitCode}: {stderr.Result.Trim()}");
        }
    }
}
