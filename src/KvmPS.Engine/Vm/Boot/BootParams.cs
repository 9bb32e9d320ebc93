using System.Buffers.Binary;
using System.Text;
using KvmPS.Vm.Firmware;

namespace KvmPS.Vm.Boot;

/// <summary>Writes the Linux <c>boot_params</c> "zero page" (Documentation/arch/x86/zero-page.rst, boot.rst).</summary>
public static class BootParams
{
    public const int Size = 4096;
    private const int AcpiRsdpAddr = 0x070, ExtRamdiskImage = 0x0c0, ExtRamdiskSize = 0x0c4, ExtCmdLinePtr = 0x0c8;
    private const int E820Entries = 0x1e8, SetupHeader = 0x1f1, BootFlag = 0x1fe, Header = 0x202, Version = 0x206;
    private const int TypeOfLoader = 0x210, LoadFlags = 0x211, RamdiskImage = 0x218, RamdiskSize = 0x21c;
    private const int HeapEndPtr = 0x224, CmdLinePtr = 0x228, KernelAlignment = 0x230, CmdlineSize = 0x238, E820Table = 0x2d0;
    private const byte CAN_USE_HEAP = 0x80, LOADED_HIGH = 0x01;

    public static byte[] Build(LoadedKernel kernel, IReadOnlyList<E820Entry> e820, ulong cmdlineAddress, int cmdlineLength,
        (ulong Address, ulong Size)? initrd, ulong rsdpAddress)
    {
        byte[] zp = new byte[Size];
        var p = zp.AsSpan();
        if (kernel.SetupHeader is { } hdr)
            hdr.CopyTo(p[SetupHeader..]);
        else
        {
            // A synthesized header for ELF kernels, as a bootloader of protocol 2.15 would fill it.
            BinaryPrimitives.WriteUInt16LittleEndian(p[BootFlag..], 0xAA55);
            BinaryPrimitives.WriteUInt32LittleEndian(p[Header..], 0x53726448);
            BinaryPrimitives.WriteUInt16LittleEndian(p[Version..], 0x020f);
            BinaryPrimitives.WriteUInt32LittleEndian(p[KernelAlignment..], 0x0100_0000);
        }
        p[TypeOfLoader] = 0xff;
        p[LoadFlags] |= CAN_USE_HEAP | LOADED_HIGH;
        BinaryPrimitives.WriteUInt16LittleEndian(p[HeapEndPtr..], 0xfe00);
        BinaryPrimitives.WriteUInt32LittleEndian(p[CmdLinePtr..], (uint)cmdlineAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(p[ExtCmdLinePtr..], (uint)(cmdlineAddress >> 32));
        BinaryPrimitives.WriteUInt32LittleEndian(p[CmdlineSize..], (uint)cmdlineLength);
        if (initrd is { } rd)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(p[RamdiskImage..], (uint)rd.Address);
            BinaryPrimitives.WriteUInt32LittleEndian(p[RamdiskSize..], (uint)rd.Size);
            BinaryPrimitives.WriteUInt32LittleEndian(p[ExtRamdiskImage..], (uint)(rd.Address >> 32));
            BinaryPrimitives.WriteUInt32LittleEndian(p[ExtRamdiskSize..], (uint)(rd.Size >> 32));
        }
        BinaryPrimitives.WriteUInt64LittleEndian(p[AcpiRsdpAddr..], rsdpAddress);
        if (e820.Count > E820Map.MaxEntries) throw new ArgumentException($"{e820.Count} e820 entries exceed the zero page's {E820Map.MaxEntries}.");
        p[E820Entries] = (byte)e820.Count;
        for (int i = 0; i < e820.Count; i++)
        {
            var slot = p.Slice(E820Table + i * 20, 20);
            BinaryPrimitives.WriteUInt64LittleEndian(slot, e820[i].Address);
            BinaryPrimitives.WriteUInt64LittleEndian(slot[8..], e820[i].SizeBytes);
            BinaryPrimitives.WriteUInt32LittleEndian(slot[16..], (uint)e820[i].Type);
        }
        return zp;
    }

    /// <summary>Writes the NUL-terminated command line and returns its length including the NUL.</summary>
    public static int WriteCmdline(GuestMemory memory, string cmdline)
    {
        byte[] bytes = Encoding.ASCII.GetBytes(cmdline + "\0");
        if (bytes.Length > MemoryLayout.CmdlineMaxBytes)
            throw new ArgumentException($"The kernel command line is {bytes.Length} bytes; at most {MemoryLayout.CmdlineMaxBytes} fit.");
        memory.Write(MemoryLayout.CmdlineAddress, bytes);
        return bytes.Length;
    }
}
