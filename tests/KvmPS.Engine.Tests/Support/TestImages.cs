using System.Buffers.Binary;

namespace KvmPS.Engine.Tests.Support;

/// <summary>Minimal kernel images built in memory for loader and engine tests.</summary>
internal static class TestImages
{
    /// <summary>An ELF64 x86-64 executable with one PT_LOAD segment holding <paramref name="code"/> at <paramref name="loadAddress"/>, entered there.</summary>
    public static byte[] Elf64(ulong loadAddress, byte[] code, ushort machine = 62, byte elfClass = 2, ushort type = 2)
    {
        const int ehsize = 64, phsize = 56;
        var image = new byte[ehsize + phsize + code.Length];
        var s = image.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(s, 0x464c457f);
        s[4] = elfClass; s[5] = 1; s[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(s[16..], type);
        BinaryPrimitives.WriteUInt16LittleEndian(s[18..], machine);
        BinaryPrimitives.WriteUInt32LittleEndian(s[20..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(s[24..], loadAddress);       // e_entry
        BinaryPrimitives.WriteUInt64LittleEndian(s[32..], ehsize);            // e_phoff
        BinaryPrimitives.WriteUInt16LittleEndian(s[52..], ehsize);
        BinaryPrimitives.WriteUInt16LittleEndian(s[54..], phsize);
        BinaryPrimitives.WriteUInt16LittleEndian(s[56..], 1);
        var ph = s[ehsize..];
        BinaryPrimitives.WriteUInt32LittleEndian(ph, 1);                      // PT_LOAD
        BinaryPrimitives.WriteUInt32LittleEndian(ph[4..], 5);                 // R+X
        BinaryPrimitives.WriteUInt64LittleEndian(ph[8..], ehsize + phsize);   // p_offset
        BinaryPrimitives.WriteUInt64LittleEndian(ph[16..], loadAddress);      // p_vaddr
        BinaryPrimitives.WriteUInt64LittleEndian(ph[24..], loadAddress);      // p_paddr
        BinaryPrimitives.WriteUInt64LittleEndian(ph[32..], (ulong)code.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[40..], (ulong)code.Length);
        code.CopyTo(s[(ehsize + phsize)..]);
        return image;
    }
}
