using Microsoft.Win32.SafeHandles;
using KvmPS.Vmm;

namespace KvmPS.Devices.Virtio.Scsi;

/// <summary>An ISO image the drive cannot use; the message names the file and says why.</summary>
public sealed class IsoImageException(string path, string message, Exception? inner = null) : Exception(message, inner)
{
    public string ImagePath { get; } = path;
}

/// <summary>
/// A read-only ISO 9660 image behind the CD-ROM LUN: opened O_RDONLY (nothing the guest does can write it), checked
/// for the primary volume descriptor's "CD001" at byte 0x8001 (sector 16, after the 32 KiB system area), and read in
/// 2048-byte blocks. A partial last block is not exposed.
/// </summary>
public sealed class IsoImage : IDisposable
{
    public const int BlockSize = 2048;
    /// <summary>Where ISO 9660 puts the standard identifier of the first volume descriptor (sector 16, byte 1).</summary>
    public const long SignatureOffset = 0x8001;
    private static ReadOnlySpan<byte> Signature => "CD001"u8;

    private readonly SafeFileHandle _handle;

    private IsoImage(string path, SafeFileHandle handle, long sizeBytes)
    {
        Path = path;
        _handle = handle;
        SizeBytes = sizeBytes;
    }

    public string Path { get; }
    public long SizeBytes { get; }
    /// <summary>Whole 2048-byte blocks.</summary>
    public uint Blocks => (uint)Math.Min(SizeBytes / BlockSize, uint.MaxValue);

    /// <summary>
    /// Opens and checks <paramref name="path"/>: missing, a directory, unreadable, too short or without the ISO 9660
    /// signature is an <see cref="IsoImageException"/> naming the file.
    /// </summary>
    public static IsoImage Open(string path)
    {
        if (string.IsNullOrEmpty(path)) throw new IsoImageException(path ?? "", "the ISO image path is empty.");
        if (Directory.Exists(path)) throw new IsoImageException(path, $"'{path}' is a directory, not an ISO image.");
        SafeFileHandle handle;
        try
        {
            // FileAccess.Read: O_RDONLY. FileShare.ReadWrite: no flock, so several VMs may share one ISO.
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new IsoImageException(path, $"the ISO image '{path}' does not exist.", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IsoImageException(path, $"cannot read the ISO image '{path}': {IoErrorText.Describe(e, path)}", e);
        }
        try
        {
            long size = RandomAccess.GetLength(handle);
            Span<byte> id = stackalloc byte[5];
            int n = size >= SignatureOffset + id.Length ? RandomAccess.Read(handle, id, SignatureOffset) : 0;
            if (n != id.Length || !id.SequenceEqual(Signature))
                throw new IsoImageException(path, $"'{path}' is not an ISO 9660 image (no \"CD001\" volume descriptor at byte 0x8001).");
            return new IsoImage(path, handle, size);
        }
        catch (IOException e)
        {
            handle.Dispose();
            throw new IsoImageException(path, $"cannot read the ISO image '{path}': {e.Message}", e);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads exactly <c>buffer.Length</c> bytes at <paramref name="offset"/> (the caller checked the range).</summary>
    public void Read(long offset, Span<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = RandomAccess.Read(_handle, buffer[done..], offset + done);
            if (n == 0) { buffer[done..].Clear(); return; } // the file shrank under us: zeroes, not stale data
            done += n;
        }
    }

    public void Dispose() => _handle.Dispose();
}
