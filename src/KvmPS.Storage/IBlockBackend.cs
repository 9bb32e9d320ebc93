namespace KvmPS.Storage;

/// <summary>
/// A virtual disk as seen by a block device model (virtio-blk): a flat array of bytes.
/// </summary>
/// <remarks>
/// Offsets and lengths are in bytes. Requests must lie inside [0, <see cref="SizeBytes"/>);
/// out-of-range requests throw <see cref="ArgumentOutOfRangeException"/>. Writes to a backend opened
/// read-only throw <see cref="DiskImageReadOnlyException"/>.
/// Thread-safety: every implementation in this assembly is safe to call from several threads
/// (raw images rely on positional I/O; qcow2 serialises all requests with one lock), although the
/// device model is expected to issue requests from a single I/O thread.
/// </remarks>
public interface IBlockBackend : IDisposable
{
    /// <summary>Path of the image file backing this disk.</summary>
    string Path { get; }

    /// <summary>Virtual disk size in bytes.</summary>
    ulong SizeBytes { get; }

    /// <summary>True when the image was opened without write access.</summary>
    bool ReadOnly { get; }

    /// <summary>Reads <c>buffer.Length</c> bytes starting at <paramref name="offset"/>.</summary>
    void Read(ulong offset, Span<byte> buffer);

    /// <summary>Writes <c>data.Length</c> bytes starting at <paramref name="offset"/>.</summary>
    void Write(ulong offset, ReadOnlySpan<byte> data);

    /// <summary>Makes every completed write durable (fdatasync).</summary>
    void Flush();

    /// <summary>
    /// Hints that the range is no longer needed. Afterwards the range reads as zeroes or as its old
    /// contents (the guest may not rely on either); space may be returned to the host file system.
    /// </summary>
    void Discard(ulong offset, ulong lengthBytes);

    /// <summary>
    /// Makes the range read as zeroes. With <paramref name="mayUnmap"/> the backend may also release
    /// the storage behind it; without, storage stays allocated when the format allows that.
    /// </summary>
    void WriteZeroes(ulong offset, ulong lengthBytes, bool mayUnmap);
}
