using KvmPS.Storage;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Devices.Virtio.Block;

/// <summary>
/// The disk of a live upgrade's destination until the running VMM hands its open image over
/// (<see cref="VirtioBlock.AdoptBackend"/>): it knows the virtual size (read without locking, for the config space)
/// and holds no image. No vCPU runs before the hand-over, so no request reaches it; one that did would fail.
/// On a source that released its image for a migration over tcp it holds the image chain's files, unlocked
/// (<paramref name="releasedFiles"/>, top image first; closed with it), to lock and use again if the destination refuses.
/// </summary>
internal sealed class PendingBlockBackend(string path, ulong sizeBytes, bool readOnly, IReadOnlyList<SafeFileHandle>? releasedFiles = null) : IBlockBackend
{
    public string Path => path;
    public ulong SizeBytes => sizeBytes;
    public bool ReadOnly => readOnly;

    /// <summary>The released image chain's open files, or null: none is held (a destination's placeholder).</summary>
    public IReadOnlyList<SafeFileHandle>? ReleasedFiles => releasedFiles;

    private InvalidOperationException NotYet() => new($"the disk image '{path}' has not been handed over to this VMM yet");

    public void Read(ulong offset, Span<byte> buffer) => throw NotYet();
    public void Write(ulong offset, ReadOnlySpan<byte> data) => throw NotYet();
    public void Flush() => throw NotYet();
    public void Discard(ulong offset, ulong lengthBytes) => throw NotYet();
    public void WriteZeroes(ulong offset, ulong lengthBytes, bool mayUnmap) => throw NotYet();

    public void Dispose()
    {
        if (releasedFiles is null) return;
        foreach (var file in releasedFiles) file.Dispose();
    }
}
