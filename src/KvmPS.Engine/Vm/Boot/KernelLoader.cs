using System.Buffers.Binary;
using KvmPS.Vmm;

namespace KvmPS.Vm.Boot;

public enum KernelFormat { Elf64, BzImage }

/// <summary>Where a loaded kernel sits in guest memory and how to enter it.</summary>
public sealed record LoadedKernel(KernelFormat Format, ulong EntryAddress, ulong LoadStart, ulong LoadEnd, byte[]? SetupHeader, ulong InitrdAddressMax);

/// <summary>
/// Loads a Linux bzImage (boot protocol 2.12+, 64-bit entry) or any ELF64 x86-64 executable (PT_LOAD segments at
/// their physical addresses, entry at e_entry: how Firecracker boots a vmlinux).
/// </summary>
public static class KernelLoader
{
    private const uint ElfMagic = 0x464c457f;
    private const ushort EM_X86_64 = 62, ET_EXEC = 2;
    private const uint PT_LOAD = 1;
    private const uint HdrSMagic = 0x53726448; // "HdrS"
    private const ushort XLF_KERNEL_64 = 1;
    private const ulong DefaultInitrdAddressMax = 0x37ff_ffff;

    /// <param name="memoryIsZero">Guest RAM was just mapped and nothing wrote it yet: an ELF segment's zero-filled tail
    /// (.bss) is then left untouched instead of written, which would fault in every page of it before the guest ran.</param>
    public static LoadedKernel Load(GuestMemory memory, string path, ReadOnlySpan<byte> image, bool memoryIsZero = false)
    {
        if (image.Length >= 64 && BinaryPrimitives.ReadUInt32LittleEndian(image) == ElfMagic) return LoadElf(memory, path, image, memoryIsZero);
        if (image.Length >= 0x250 && BinaryPrimitives.ReadUInt32LittleEndian(image[0x202..]) == HdrSMagic) return LoadBzImage(memory, path, image);
        throw new BootImageException(path, "not a kernel: neither an ELF executable nor a Linux bzImage (no ELF magic, no 'HdrS' boot header).");
    }

    public static LoadedKernel Load(GuestMemory memory, string path)
    {
        byte[] image;
        try { image = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new BootImageException(path, $"cannot read the kernel image: {IoErrorText.Describe(e, path)}", e); }
        return Load(memory, path, image);
    }

    private static LoadedKernel LoadElf(GuestMemory memory, string path, ReadOnlySpan<byte> image, bool memoryIsZero)
    {
        if (image[4] != 2) throw new BootImageException(path, $"32-bit ELF is not supported: only ELF64 x86-64 executables boot (EI_CLASS {image[4]}).");
        if (image[5] != 1) throw new BootImageException(path, "big-endian ELF: wrong architecture for x86-64.");
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(image[18..]);
        if (machine != EM_X86_64) throw new BootImageException(path, $"wrong architecture: ELF machine {machine}, expected x86-64 ({EM_X86_64}).");
        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(image[16..]);
        if (type != ET_EXEC) throw new BootImageException(path, $"ELF type {type} is not an executable (ET_EXEC); shared objects and relocatable files cannot boot.");

        ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(image[24..]);
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(image[32..]);
        ushort phentsize = BinaryPrimitives.ReadUInt16LittleEndian(image[54..]);
        ushort phnum = BinaryPrimitives.ReadUInt16LittleEndian(image[56..]);
        if (phentsize < 56 || phoff + (ulong)phnum * phentsize > (ulong)image.Length)
            throw new BootImageException(path, "truncated ELF: the program header table lies beyond the end of the file.");

        ulong lo = ulong.MaxValue, hi = 0;
        bool entryInside = false;
        var written = new List<(ulong Start, ulong End)>(phnum);
        for (int i = 0; i < phnum; i++)
        {
            var ph = image.Slice((int)(phoff + (ulong)(i * phentsize)), phentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) != PT_LOAD) continue;
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]);
            ulong paddr = BinaryPrimitives.ReadUInt64LittleEndian(ph[24..]);
            ulong filesz = BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]);
            ulong memsz = BinaryPrimitives.ReadUInt64LittleEndian(ph[40..]);
            if (memsz == 0) continue;
            if (filesz > memsz || offset + filesz > (ulong)image.Length)
                throw new BootImageException(path, $"truncated ELF: segment {i} (file offset 0x{offset:x}, 0x{filesz:x} bytes) lies beyond the end of the file.");
            if (paddr < MemoryLayout.HighMemoryStart)
                throw new BootImageException(path, $"ELF segment {i} loads at 0x{paddr:x}, below 1 MiB where the VMM keeps boot data; link the image at 1 MiB or above.");
            if (!memory.IsValidRange(paddr, memsz))
                throw new BootImageException(path, $"too large for guest memory: segment {i} needs 0x{paddr:x}-0x{paddr + memsz:x} but guest RAM is {memory.SizeBytes >> 20} MiB.");
            memory.Write(paddr, image.Slice((int)offset, (int)filesz));
            // Segments do not overlap in a well-formed ELF; if this zero tail covers an earlier segment's bytes, it is
            // written as the file says.
            ulong zeroStart = paddr + filesz, zeroEnd = paddr + memsz;
            if (!memoryIsZero || written.Exists(w => w.Start < zeroEnd && zeroStart < w.End))
                memory.Fill(zeroStart, (int)(memsz - filesz), 0);
            written.Add((paddr, paddr + filesz));
            lo = Math.Min(lo, paddr);
            hi = Math.Max(hi, paddr + memsz);
            entryInside |= entry >= paddr && entry < paddr + memsz;
        }
        if (hi == 0) throw new BootImageException(path, "the ELF file has no loadable (PT_LOAD) segments.");
        if (!entryInside) throw new BootImageException(path, $"the ELF entry point 0x{entry:x} is not inside any loaded segment (physical addresses are used).");
        return new LoadedKernel(KernelFormat.Elf64, entry, lo, hi, null, DefaultInitrdAddressMax);
    }

    private static LoadedKernel LoadBzImage(GuestMemory memory, string path, ReadOnlySpan<byte> image)
    {
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(image[0x206..]);
        if (version < 0x020c) throw new BootImageException(path, $"boot protocol {version >> 8}.{version & 0xff} is too old: 2.12 or newer (a 64-bit entry) is required.");
        ushort xloadflags = BinaryPrimitives.ReadUInt16LittleEndian(image[0x236..]);
        if ((xloadflags & XLF_KERNEL_64) == 0) throw new BootImageException(path, "the bzImage has no 64-bit entry point (XLF_KERNEL_64 is clear): wrong architecture or a 32-bit kernel.");

        int setupSects = image[0x1f1] == 0 ? 4 : image[0x1f1];
        int setupBytes = (setupSects + 1) * 512;
        if (setupBytes >= image.Length) throw new BootImageException(path, "truncated bzImage: no protected-mode kernel after the setup sectors.");
        var kernel = image[setupBytes..];

        bool relocatable = image[0x234] != 0;
        ulong preferred = BinaryPrimitives.ReadUInt64LittleEndian(image[0x258..]);
        uint initSize = BinaryPrimitives.ReadUInt32LittleEndian(image[0x260..]);
        ulong load = relocatable ? MemoryLayout.KernelLoadAddress : preferred;
        ulong span = Math.Max((ulong)kernel.Length, initSize);
        if (!memory.IsValidRange(load, span))
            throw new BootImageException(path, $"too large for guest memory: the kernel needs 0x{load:x}-0x{load + span:x} (init_size) but guest RAM is {memory.SizeBytes >> 20} MiB.");
        memory.Write(load, kernel);

        int headerEnd = 0x202 + image[0x201];
        byte[] setupHeader = image[0x1f1..Math.Min(headerEnd, image.Length)].ToArray();
        ulong initrdMax = BinaryPrimitives.ReadUInt32LittleEndian(image[0x22c..]);
        return new LoadedKernel(KernelFormat.BzImage, load + 0x200, load, load + span, setupHeader, initrdMax == 0 ? DefaultInitrdAddressMax : initrdMax);
    }

    /// <summary>Places the initrd page-aligned at the top of low RAM (below the kernel's limit) and returns (address, size).</summary>
    public static (ulong Address, ulong Size) LoadInitrd(GuestMemory memory, LoadedKernel kernel, string path)
    {
        byte[] data;
        try { data = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new BootImageException(path, $"cannot read the initrd: {IoErrorText.Describe(e, path)}", e); }
        ulong lowEnd = memory.Regions[0].EndAddress;
        ulong top = Math.Min(lowEnd, kernel.InitrdAddressMax + 1);
        ulong size = (ulong)data.Length;
        if (size > top) throw new BootImageException(path, $"the initrd ({size >> 20} MiB) is larger than the low guest memory that can hold it.");
        ulong address = (top - size) & ~(MemoryLayout.PageSize - 1);
        if (address < kernel.LoadEnd)
            throw new BootImageException(path, $"the initrd ({size} bytes) would overlap the kernel (which ends at 0x{kernel.LoadEnd:x}): give the VM more memory or use a smaller initrd.");
        memory.Write(address, data);
        return (address, size);
    }
}
