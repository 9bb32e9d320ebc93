using System.Buffers.Binary;

namespace KvmPS.Engine.Tests.Boot;

/// <summary>Synthetic kernel images for loader tests: a minimal bzImage (setup header only) and ELF64 files.</summary>
internal static class KernelImages
{
    public const int HeaderEnd = 0x268; // through init_size (protocol 2.10+)

    /// <summary>A bzImage with <paramref name="setupSects"/> setup sectors and a protected-mode part filled with a pattern.</summary>
    public static byte[] BzImage(byte setupSects = 4, ushort version = 0x020f, ushort xloadflags = 0x1, bool relocatable = true,
        ulong preferredAddress = 0x100_0000, uint initSize = 0x20_0000, int kernelBytes = 0x3000, uint initrdAddrMax = 0x7fff_ffff,
        byte loadflags = 0x01)
    {
        int setupBytes = ((setupSects == 0 ? 4 : setupSects) + 1) * 512;
        byte[] image = new byte[setupBytes + kernelBytes];
        var p = image.AsSpan();
        p[0x1f1] = setupSects;
        BinaryPrimitives.WriteUInt16LittleEndian(p[0x1fe..], 0xAA55);
        p[0x200] = 0xeb;
        p[0x201] = (byte)(HeaderEnd - 0x202);
        BinaryPrimitives.WriteUInt32LittleEndian(p[0x202..], 0x53726448);
        BinaryPrimitives.WriteUInt16LittleEndian(p[0x206..], version);
        p[0x211] = loadflags;
        BinaryPrimitives.WriteUInt32LittleEndian(p[0x22c..], initrdAddrMax);
        BinaryPrimitives.WriteUInt32LittleEndian(p[0x230..], 0x20_0000); // kernel_alignment
        p[0x234] = relocatable ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt16LittleEndian(p[0x236..], xloadflags);
        BinaryPrimitives.WriteUInt64LittleEndian(p[0x258..], preferredAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(p[0x260..], initSize);
        for (int i = 0; i < kernelBytes; i++) image[setupBytes + i] = (byte)(i * 7 + 3);
        return image;
    }

    public sealed record Segment(uint Type, ulong PhysicalAddress, byte[] Data, ulong MemorySize);

    /// <summary>An ELF64 file with the given program headers; segment data follows the header table in order.</summary>
    public static byte[] Elf(ulong entry, IReadOnlyList<Segment> segments, byte elfClass = 2, ushort machine = 62, ushort type = 2)
    {
        const int ehdr = 64, phent = 56;
        int dataStart = ehdr + segments.Count * phent;
        byte[] image = new byte[dataStart + segments.Sum(s => s.Data.Length)];
        var p = image.AsSpan();
        p[0] = 0x7f; p[1] = (byte)'E'; p[2] = (byte)'L'; p[3] = (byte)'F';
        p[4] = elfClass; p[5] = 1; p[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(p[16..], type);
        BinaryPrimitives.WriteUInt16LittleEndian(p[18..], machine);
        BinaryPrimitives.WriteUInt32LittleEndian(p[20..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(p[24..], entry);
        BinaryPrimitives.WriteUInt64LittleEndian(p[32..], ehdr);
        BinaryPrimitives.WriteUInt16LittleEndian(p[52..], ehdr);
        BinaryPrimitives.WriteUInt16LittleEndian(p[54..], phent);
        BinaryPrimitives.WriteUInt16LittleEndian(p[56..], (ushort)segments.Count);
        int offset = dataStart;
        for (int i = 0; i < segments.Count; i++)
        {
            var s = segments[i];
            var ph = p.Slice(ehdr + i * phent, phent);
            BinaryPrimitives.WriteUInt32LittleEndian(ph, s.Type);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[4..], 7);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[8..], (ulong)offset);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[16..], 0xffff_ffff_8000_0000 + s.PhysicalAddress); // p_vaddr: unused
            BinaryPrimitives.WriteUInt64LittleEndian(ph[24..], s.PhysicalAddress);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[32..], (ulong)s.Data.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[40..], s.MemorySize);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[48..], 0x1000);
            s.Data.CopyTo(p[offset..]);
            offset += s.Data.Length;
        }
        return image;
    }

    public static byte[] Pattern(int length, byte seed)
    {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) b[i] = (byte)(seed + i * 13);
        return b;
    }
}
