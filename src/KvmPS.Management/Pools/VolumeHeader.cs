using System.Buffers.Binary;
using System.Text;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Pools;

/// <summary>
/// Format, virtual size and backing file of an image, read from its first bytes without opening it as a disk: no
/// image lock is taken, so listing works while a VM runs on the volume. qcow2 header fields as in the qcow2 spec
/// (magic at 0, backing_file_offset at 8, backing_file_size at 16, size at 24); anything else is raw.
/// </summary>
internal readonly record struct VolumeHeader(DiskFormat Format, long CapacityBytes, string? BackingFile)
{
    private const uint QcowMagic = 0x514649fb;

    public static VolumeHeader Read(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        Span<byte> header = stackalloc byte[32];
        var read = file.ReadAtLeast(header, header.Length, throwOnEndOfStream: false);
        if (read < header.Length || BinaryPrimitives.ReadUInt32BigEndian(header) != QcowMagic)
            return new VolumeHeader(DiskFormat.Raw, file.Length, null);
        var backingOffset = BinaryPrimitives.ReadUInt64BigEndian(header[8..]);
        var backingSize = BinaryPrimitives.ReadUInt32BigEndian(header[16..]);
        var size = (long)BinaryPrimitives.ReadUInt64BigEndian(header[24..]);
        string? backing = null;
        if (backingOffset != 0 && backingSize is > 0 and <= 1023 && (long)backingOffset + backingSize <= file.Length)
        {
            var name = new byte[backingSize];
            file.Position = (long)backingOffset;
            file.ReadExactly(name);
            backing = Encoding.UTF8.GetString(name);
        }
        return new VolumeHeader(DiskFormat.Qcow2, size, backing);
    }
}
