namespace KvmPS.Vm;

/// <summary>Guest-physical addresses of everything the VMM places in the guest (docs/guest-layout.md).</summary>
public static class MemoryLayout
{
    public const ulong PageSize = 0x1000;
    public const ulong HugePageSize = 0x200000;
    public const ulong MinimumRamBytes = 16UL << 20;

    public const ulong BootGdtAddress = 0x500;
    public const ulong BootIdtAddress = 0x520;
    public const ulong ZeroPageAddress = 0x7000;
    public const ulong BootStackPointer = 0x8ff0;
    public const ulong Pml4Address = 0x9000;
    public const ulong PdptAddress = 0xa000;
    public const ulong PdAddress = 0xb000; // four page directories: 0xb000-0xefff
    public const ulong CmdlineAddress = 0x20000;
    public const int CmdlineMaxBytes = 0x10000;
    public const ulong EbdaStart = 0x9fc00;
    public const ulong MpTableAddress = 0x9fc00;        // MP floating pointer
    public const ulong MpConfigTableAddress = 0xf0000;  // MP configuration table (BIOS area)
    public const ulong AcpiStart = 0xe0000;
    public const ulong AcpiEnd = 0xf0000;
    public const ulong BiosStart = 0xf0000;
    public const ulong HighMemoryStart = 0x100000; // 1 MiB
    public const ulong KernelLoadAddress = 0x100000;

    public const ulong MmioHoleStart = 0xc000_0000; // 3 GiB
    public const ulong HighRamStart = 0x1_0000_0000; // 4 GiB
    public const ulong IoApicAddress = 0xfec0_0000;
    public const ulong LocalApicAddress = 0xfee0_0000;

    // PCI (Devices/Pci): a 32-bit MMIO window for BARs, the ECAM window for bus 0 (1 MiB; MCFG, reserved by a
    // PNP0C02 device in the DSDT), and a 64-bit window above the end of RAM.
    public const ulong PciMmio32Base = 0xc000_0000;
    public const ulong PciMmio32Size = 0x2000_0000; // 0xc0000000-0xdfffffff
    public const ulong PciEcamBase = 0xe000_0000;
    public const ulong PciEcamSize = 0x10_0000;     // bus 0 only
    public const ulong PciMmio64Size = 64UL << 30;

    /// <summary>
    /// The 64-bit PCI window starts at the first 1 GiB boundary above all guest RAM (at least 4 GiB + RAM above 3 GiB)
    /// and above the hot-plug memory region when that lies above 4 GiB.
    /// </summary>
    public static ulong PciMmio64Base(ulong memoryBytes, ulong hotplugBytes = 0, ulong hotplugLowLimit = MmioHoleStart)
    {
        ulong end = HighRamStart + (memoryBytes > MmioHoleStart ? memoryBytes - MmioHoleStart : 0);
        if (hotplugBytes > 0) end = Math.Max(end, HotplugRegionStart(memoryBytes, hotplugBytes, hotplugLowLimit) + hotplugBytes);
        return AlignUp(end, 1UL << 30);
    }

    // Hot-plug memory (virtio-mem, Devices/Virtio/Mem): one region outside the boot RAM and outside the e820 RAM map.
    /// <summary>Start alignment of the hot-plug region: Linux x86 adds memory in 128 MiB memory blocks.</summary>
    public const ulong HotplugRegionAlignment = 128UL << 20;

    /// <summary>
    /// Where the hot-plug region of <paramref name="hotplugBytes"/> goes: right after the boot RAM (at the next 128 MiB
    /// boundary) when it ends below <paramref name="lowLimit"/> (the 32-bit MMIO hole; firmware boot's MMCONFIG
    /// window, which starts lower), so guests that map only the low 4 GiB reach it; otherwise at the first 1 GiB
    /// boundary above the RAM at 4 GiB.
    /// </summary>
    public static ulong HotplugRegionStart(ulong memoryBytes, ulong hotplugBytes, ulong lowLimit = MmioHoleStart)
    {
        ulong low = AlignUp(memoryBytes, HotplugRegionAlignment);
        if (memoryBytes <= lowLimit && low <= lowLimit && hotplugBytes <= lowLimit - low) return low;
        ulong highEnd = HighRamStart + (memoryBytes > MmioHoleStart ? memoryBytes - MmioHoleStart : 0);
        return AlignUp(highEnd, 1UL << 30);
    }

    private static ulong AlignUp(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);

    /// <summary>KVM needs three pages for the TSS and one for the real-mode identity map, outside RAM.</summary>
    public const ulong KvmTssAddress = 0xfffb_d000;
    public const ulong KvmIdentityMapAddress = 0xfffb_c000;

    public const ushort Pm1aEventPort = 0x600;
    public const ushort Pm1aControlPort = 0x604;
    public const ushort PmTimerPort = 0x608;
    public const ushort Gpe0Port = 0x620;          // GPE0_BLK inside the PM block (Acpi/AcpiPm)
    public const ushort CpuHotplugPort = 0x630;    // CPU hot-plug controller registers (Acpi/CpuHotplugController)
    public const ushort PciHotplugPort = 0x640;    // PCI hot-plug controller registers (Acpi/PciHotplugController)
    public const byte SciIrq = 9;
}
