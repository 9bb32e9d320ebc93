using System.Runtime.InteropServices;

namespace KvmPS.Interop;

/// <summary>
/// The ELF objects loaded into this process (the executable, libc, the loader), as dl_iterate_phdr(3) lists them with
/// their program headers: where each object's read-only segments lie, so that a VMM can drop the pages its start-up
/// touched (KvmPS.Engine Vmm/StartupPages).
/// </summary>
internal static unsafe partial class Libc
{
    // elf.h
    public const uint PT_LOAD = 1, PT_GNU_RELRO = 0x6474e552;
    public const uint PF_W = 2;

    /// <summary>struct dl_phdr_info (link.h), its first four members: the rest are not read.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct DlPhdrInfo
    {
        public nuint dlpi_addr;
        public byte* dlpi_name;
        public ElfPhdr* dlpi_phdr;
        public ushort dlpi_phnum;
    }

    /// <summary>Elf64_Phdr (elf.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ElfPhdr
    {
        public uint p_type;
        public uint p_flags;
        public ulong p_offset;
        public ulong p_vaddr;
        public ulong p_paddr;
        public ulong p_filesz;
        public ulong p_memsz;
        public ulong p_align;
    }

    [LibraryImport(Lib, EntryPoint = "dl_iterate_phdr")]
    public static partial int DlIteratePhdr(delegate* unmanaged<DlPhdrInfo*, nuint, void*, int> callback, void* data);
}
