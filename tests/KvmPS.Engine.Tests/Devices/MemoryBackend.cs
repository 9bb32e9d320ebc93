using KvmPS.Storage;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>An in-memory disk that records any request the device should never have made.</summary>
internal sealed class MemoryBackend(int sectors, bool readOnly = false) : IBlockBackend
{
    public readonly byte[] Data = new byte[sectors * 512];
    public readonly List<string> Violations = new();
    /// <summary>Byte range that fails with an I/O error (a bad spot on the "medium").</summary>
    public (ulong Start, ulong End)? BadRange { get; set; }
    public int Calls { get; private set; }
    public string Path => "mem.img";
    public ulong SizeBytes => (ulong)Data.Length;
    public bool ReadOnly => readOnly;

    private Span<byte> At(string op, ulong offset, ulong length, bool write)
    {
        Calls++;
        if (offset > SizeBytes || length > SizeBytes - offset) { Violations.Add($"{op} [{offset}+{length}) outside the disk"); throw new InvalidDataException("out of range"); }
        if (write && readOnly) { Violations.Add($"{op} on a read-only disk"); throw new DiskImageReadOnlyException(Path); }
        if (BadRange is { } bad && offset < bad.End && offset + length > bad.Start) throw new IOException("simulated media error");
        return Data.AsSpan((int)offset, (int)length);
    }

    public void Read(ulong offset, Span<byte> buffer) => At("read", offset, (ulong)buffer.Length, false).CopyTo(buffer);
    public void Write(ulong offset, ReadOnlySpan<byte> data) => data.CopyTo(At("write", offset, (ulong)data.Length, true));
    public void Flush() { Calls++; }
    public void Discard(ulong offset, ulong lengthBytes) => At("discard", offset, lengthBytes, true).Clear();
    public void WriteZeroes(ulong offset, ulong lengthBytes, bool mayUnmap) => At("write-zeroes", offset, lengthBytes, true).Clear();
    public void Dispose() { }
}
