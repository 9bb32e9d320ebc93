using System.Buffers.Binary;

namespace KvmPS.Engine.Tests.Devices.Cdrom;

/// <summary>Small ISO 9660-shaped files for tests: "CD001" at 0x8001, and each 2048-byte block starting with its number.</summary>
internal static class TestIso
{
    public static string Write(string path, int blocks, int extraBytes = 0)
    {
        var bytes = new byte[blocks * 2048 + extraBytes];
        for (int b = 0; b < blocks; b++) BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(b * 2048), (uint)b | 0xC0000000);
        bytes[0x8000] = 1;
        "CD001"u8.CopyTo(bytes.AsSpan(0x8001));
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>The block number a read returned (what <see cref="Write"/> put at the block's start).</summary>
    public static uint BlockOf(ReadOnlySpan<byte> block) => BinaryPrimitives.ReadUInt32BigEndian(block) & ~0xC0000000u;
}
