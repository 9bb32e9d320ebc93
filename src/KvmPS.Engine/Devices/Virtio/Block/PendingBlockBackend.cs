using KvmPS.Storage;

namespace KvmPS.Devices.Virtio.Block;

/// <summary>
/// The disk of a live upgrade's destination until the running VMM hands its open image over
/// (<see cref="VirtioBlock.AdoptBackend"/>): it knows the virtual size (read without locking, for the config space)
/// and holds no file. No vCPU runs before the hand-over, so no request reaches it; one that did would fail.
/// </summary>
internal sealed class PendingBlockBackend(string path, ulong sizeBytes, bool readOnly) : IBlockBackend
{
    public string Path => path;
    public ulong SizeBytes => sizeBytes;
    public bool ReadOnly => readOnly;

    private InvalidOperationException NotYet() => new($"the disk image '{path}' has not been handed over to this VMM yet");

    public void Read(ulong offset, Span<byte> buffer) => throw NotYet();
    public void Write(ulong offset, ReadOnlySpan<byte> data) => throw NotYet();
    public void Flush() => throw NotYet();
    public void Discard(ulong offset, ulong lengthBytes) => throw NotYet();
    public void WriteZeroes(ulong offset, ulong lengthBytes, bool mayUnmap) => throw NotYet();
    public void Dispose() { }
}
