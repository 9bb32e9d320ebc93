using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Acpi;
using KvmPS.Devices;
using KvmPS.Devices.Legacy;
using KvmPS.Devices.Pci;
using KvmPS.Devices.Virtio;
using KvmPS.Interop;
using KvmPS.Vm.Firmware;
using KvmPS.Vmm;

namespace KvmPS.Vm.Boot;

/// <summary>
/// A firmware image (SeaBIOS) mapped the way a PC maps its flash: the whole image read-only just below 4 GiB, and its
/// last 128 KiB copied into guest RAM at 0xE0000-0xFFFFF (what QEMU's PAM "shadow RAM" ends up holding; SeaBIOS finds
/// RAM there already writable and keeps running from it). The host mapping lives as long as the VM.
/// </summary>
public sealed unsafe class FirmwareImage : IDisposable
{
    public const string SeaBiosAlias = "seabios";
    public const string SeaBiosPath = "/usr/share/seabios/bios-256k.bin";
    public const int MinSize = 64 << 10, MaxSize = 16 << 20;
    public const ulong LegacyBiosBase = 0xE0000, LegacyBiosSize = 0x20000;
    private const ulong FourGiB = 0x1_0000_0000;
    /// <summary>KVM_CAP_READONLY_MEM (linux/kvm.h).</summary>
    public const int KvmCapReadonlyMem = 81;
    /// <summary>KVM memory slot of the image (guest RAM uses the low slot numbers).</summary>
    public const uint Slot = 16;

    private nint _host;
    private bool _disposed;

    public string Path { get; }
    public byte[] Bytes { get; }
    public int Size => Bytes.Length;
    /// <summary>Guest-physical address of the image's first byte: 4 GiB - size.</summary>
    public ulong GuestAddress => FourGiB - (ulong)Size;
    /// <summary>True when the image slot is KVM_MEM_READONLY (guest writes exit as MMIO and are dropped).</summary>
    public bool ReadOnlySlot { get; private set; }

    /// <summary>KVM's three TSS pages for real-mode emulation: just below the image (the usual 0xfffbd000 for ≤ 256 KiB).</summary>
    public ulong KvmTssAddress => Math.Min(MemoryLayout.KvmTssAddress, GuestAddress - 0x3000);
    /// <summary>KVM's identity-map page, one page below the TSS.</summary>
    public ulong KvmIdentityMapAddress => KvmTssAddress - 0x1000;

    private FirmwareImage(string path, byte[] bytes) { Path = path; Bytes = bytes; }

    /// <summary>"seabios" names Debian's SeaBIOS build; anything else is a path.</summary>
    public static string Resolve(string pathOrAlias) => pathOrAlias == SeaBiosAlias ? SeaBiosPath : pathOrAlias;

    /// <summary>Reads and checks the image; a missing, unreadable or badly sized file is a <see cref="BootImageException"/>.</summary>
    public static FirmwareImage Load(string pathOrAlias)
    {
        string path = Resolve(pathOrAlias);
        if (!File.Exists(path))
            throw new BootImageException(path, pathOrAlias == SeaBiosAlias
                ? "the firmware image does not exist (install Debian's 'seabios' package)." : "the firmware image does not exist.");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BootImageException(path, pathOrAlias == SeaBiosAlias
                ? $"cannot read the firmware image: {IoErrorText.Describe(e)} (install Debian's 'seabios' package)"
                : $"cannot read the firmware image: {IoErrorText.Describe(e)}", e);
        }
        if (bytes.Length < MinSize || bytes.Length > MaxSize || bytes.Length % 0x1000 != 0)
            throw new BootImageException(path, $"a firmware image must be 64 KiB-16 MiB and a multiple of 4 KiB; this one is {bytes.Length} bytes.");
        return new FirmwareImage(path, bytes);
    }

    /// <summary>Maps the image below 4 GiB (read-only when KVM can) and copies its last 128 KiB to 0xE0000.</summary>
    public void MapInto(KvmVmHandle vm, GuestMemory memory)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_host == 0)
        {
            nint p = Libc.Mmap(0, (nuint)Size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
            if (p == Libc.MAP_FAILED) throw new GuestMemoryException($"Cannot map {Size >> 10} KiB for the firmware image: {Libc.ErrorText(Marshal.GetLastPInvokeError())}");
            _host = p;
            Bytes.CopyTo(new Span<byte>((void*)p, Size));
        }
        ReadOnlySlot = Kvm.CheckExtension(vm, KvmCapReadonlyMem) > 0;
        Kvm.SetUserMemoryRegion(vm, new kvm_userspace_memory_region
        {
            slot = Slot,
            flags = ReadOnlySlot ? KvmConstants.KVM_MEM_READONLY : 0,
            guest_phys_addr = GuestAddress,
            memory_size = (ulong)Size,
            userspace_addr = (ulong)_host,
        });
        int n = (int)Math.Min(LegacyBiosSize, (ulong)Size);
        memory.Write(LegacyBiosBase + LegacyBiosSize - (ulong)n, Bytes.AsSpan(Size - n, n));
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_host != 0) Libc.Munmap(_host, (nuint)Size);
        _host = 0;
    }
}

/// <summary>
/// Firmware boot (SeaBIOS): the fw_cfg contents SeaBIOS reads, the q35 MMCONFIG alias it switches to, and the ACPI
/// tables handed over through QEMU's table-loader protocol. See docs/devices.md, "Firmware boot".
/// </summary>
public static class FirmwareLoader
{
    /// <summary>Where SeaBIOS puts the q35 MMCONFIG window (PCIEXBAR) once it sees our 8086:29c0 host bridge.</summary>
    public const ulong Q35EcamBase = 0xB000_0000;
    /// <summary>Firmware boot keeps guest RAM below the q35 MMCONFIG window.</summary>
    public const ulong MaxMemoryBytes = Q35EcamBase;
    public const ushort SerconPort = 0x3F8;
    public const string TablesFile = "etc/acpi/tables", RsdpFile = "etc/acpi/rsdp", LoaderFile = "etc/table-loader";

    /// <summary>
    /// Wires the firmware into a VM under construction (its image already mapped: <see cref="FirmwareImage.MapInto"/>,
    /// done with the other memory slots): aliases the bus-0 ECAM where SeaBIOS will look
    /// for it, registers fw_cfg (with DMA) and the debug console. Returns the fw_cfg device.
    /// </summary>
    public static FwCfg Install(FirmwareImage image, GuestMemory memory, PortIoBus ports, MmioBus mmio, PciBus pci,
        MachineConfig config, AcpiConfig acpi)
    {
        mmio.Register(pci.Ecam, Q35EcamBase, pci.Windows.EcamSize);
        var fwcfg = Build(config, memory, acpi, image);
        ports.Register(fwcfg, FwCfg.BasePort, FwCfg.PortCount);
        ports.Register(new DebugCon(config.DebugConOutput ?? (_ => { })), DebugCon.Port, 1);
        return fwcfg;
    }

    /// <summary>The fw_cfg items and files for this machine.</summary>
    public static FwCfg Build(MachineConfig config, GuestMemory memory, AcpiConfig acpi, FirmwareImage? image = null)
    {
        var fw = new FwCfg(memory);
        fw.SetItem(FwCfg.KeyRamSize, FwCfg.Le64(config.MemoryBytes));
        fw.SetItem(FwCfg.KeyNoGraphic, FwCfg.Le16(1));
        fw.SetItem(FwCfg.KeyNbCpus, FwCfg.Le16((ushort)config.VcpuCount));
        fw.SetItem(FwCfg.KeyMaxCpus, FwCfg.Le16((ushort)config.EffectiveMaxVcpus));
        fw.SetItem(FwCfg.KeyBootMenu, FwCfg.Le16(0));
        fw.SetItem(FwCfg.KeyIrq0Override, FwCfg.Le32(1)); // the MADT and SeaBIOS's MP table route IRQ0 to pin 2
        fw.AddFile("etc/boot-cpus", FwCfg.Le16((ushort)config.VcpuCount));
        fw.AddFile("etc/e820", E820File(memory, image));
        if (BootOrder(config) is { } order) fw.AddFile("bootorder", Encoding.ASCII.GetBytes(order));
        if (config.FirmwareSerialConsole) fw.AddFile("etc/sercon-port", FwCfg.Le16(SerconPort));
        var (tables, rsdp, loader) = AcpiLoaderFiles(AcpiTables.Build(acpi));
        fw.AddFile(TablesFile, tables);
        fw.AddFile(RsdpFile, rsdp);
        fw.AddFile(LoaderFile, loader);
        return fw;
    }

    /// <summary>"etc/e820": { le64 address, le64 length, le32 type } per entry (20 bytes): RAM, ECAM, KVM's TSS pages.</summary>
    public static byte[] E820File(GuestMemory memory, FirmwareImage? image)
    {
        var entries = new List<E820Entry>();
        foreach (var r in memory.BootRegions) entries.Add(new E820Entry(r.GuestAddress, r.SizeBytes, E820Type.Ram));
        entries.Add(new E820Entry(MemoryLayout.PciEcamBase, MemoryLayout.PciEcamSize, E820Type.Reserved));
        ulong kvmBase = image?.KvmIdentityMapAddress ?? MemoryLayout.KvmIdentityMapAddress;
        entries.Add(new E820Entry(kvmBase, 0x4000, E820Type.Reserved));
        entries.Sort((a, b) => a.Address.CompareTo(b.Address));
        var bytes = new byte[20 * entries.Count];
        for (int i = 0; i < entries.Count; i++)
        {
            var s = bytes.AsSpan(20 * i);
            BinaryPrimitives.WriteUInt64LittleEndian(s, entries[i].Address);
            BinaryPrimitives.WriteUInt64LittleEndian(s[8..], entries[i].SizeBytes);
            BinaryPrimitives.WriteUInt32LittleEndian(s[16..], (uint)entries[i].Type);
        }
        return bytes;
    }

    /// <summary>
    /// "bootorder": with <see cref="MachineConfig.BootOnce"/> or <see cref="MachineConfig.BootOrder"/>, one
    /// OpenFirmware path per listed device and then "HALT", so SeaBIOS tries those devices in that order and nothing
    /// else (boot.c is_bootprio_strict); otherwise the first configured block device's path, or null.
    /// </summary>
    public static string? BootOrder(MachineConfig config)
    {
        if ((config.BootOnce ?? config.BootOrder) is not { } slots)
            return BootOrder(config.Devices);
        var text = new StringBuilder();
        foreach (int slot in slots) text.Append(BootPath(config.Devices[slot - 1], slot)).Append('\n');
        return text.Append("HALT\n").ToString();
    }

    /// <summary>
    /// "bootorder" without a boot order: the OpenFirmware path of the first configured block device (PCI slot = 1 +
    /// its index), or null. From the configuration, not the devices present: a removed device before it leaves its
    /// slot empty, not shifted.
    /// </summary>
    public static string? BootOrder(IReadOnlyList<Devices.Config.DeviceConfig> devices) =>
        ConfiguredDeviceSlots.FirstDiskSlot(devices) is int slot and > 0 ? $"/pci@i0cf8/*@{slot:x}\n" : null;

    /// <summary>
    /// The path SeaBIOS builds for a device (boot.c): a PCI function is "/pci@i0cf8/*@SLOT" (bootprio_find_pci_device,
    /// and bootprio_find_pci_rom for a NIC's option ROM); a virtio-scsi LUN adds "/*@0/*@TARGET,LUN"
    /// (bootprio_find_scsi_device). SeaBIOS matches them as globs, "*" standing for any device name.
    /// </summary>
    public static string BootPath(Devices.Config.DeviceConfig device, int slot) => device switch
    {
        Devices.Virtio.Scsi.CdromDeviceConfig => $"/pci@i0cf8/*@{slot:x}/*@0/*@0,0",
        _ => $"/pci@i0cf8/*@{slot:x}",
    };

    // --- ACPI through QEMU's linker/loader ("etc/table-loader"): 128-byte little-endian commands ---
    public const uint CmdAllocate = 1, CmdAddPointer = 2, CmdAddChecksum = 3;
    public const byte ZoneHigh = 1, ZoneFseg = 2;
    private const int LoaderEntrySize = 128, LoaderNameSize = 56;

    /// <summary>
    /// Turns tables placed at fixed addresses (RSDP first, as <see cref="AcpiTables.Build"/> returns them) into the
    /// relocatable form SeaBIOS loads: one blob of tables whose pointers hold offsets into the blob, the RSDP (pointers
    /// likewise), and loader commands that allocate both, add the blob's final address to every pointer and redo the
    /// checksums.
    /// </summary>
    public static (byte[] Tables, byte[] Rsdp, byte[] Loader) AcpiLoaderFiles(IReadOnlyList<(ulong Address, byte[] Bytes)> placed)
    {
        if (placed.Count < 2 || !placed[0].Bytes.AsSpan(0, 8).SequenceEqual("RSD PTR "u8)) throw new ArgumentException("the first placed table must be the RSDP.", nameof(placed));
        ulong baseAddress = placed.Skip(1).Min(p => p.Address);
        ulong end = placed.Skip(1).Max(p => p.Address + (ulong)p.Bytes.Length);
        var blob = new byte[end - baseAddress];
        foreach (var (address, bytes) in placed.Skip(1)) bytes.CopyTo(blob, (int)(address - baseAddress));
        byte[] rsdp = (byte[])placed[0].Bytes.Clone();

        var pointers = new List<(string File, int Offset, int Size)>();
        var checksums = new List<(string File, int Offset, int Start, int Length)>();
        void Pointer(string file, byte[] data, int offset, int size)
        {
            ulong v = size == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(offset)) : BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(offset));
            if (v < baseAddress || v >= end) return; // null (FACS absent) or not a table of ours
            ulong rel = v - baseAddress;
            if (size == 8) BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(offset), rel);
            else BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(offset), (uint)rel);
            pointers.Add((file, offset, size));
        }

        foreach (var (address, bytes) in placed.Skip(1))
        {
            int at = (int)(address - baseAddress);
            string sig = Encoding.ASCII.GetString(bytes, 0, 4);
            int length = bytes.Length;
            switch (sig)
            {
                case "FACP":
                    Pointer(TablesFile, blob, at + 36, 4); Pointer(TablesFile, blob, at + 40, 4);
                    if (length >= 148) { Pointer(TablesFile, blob, at + 132, 8); Pointer(TablesFile, blob, at + 140, 8); }
                    break;
                case "XSDT": for (int o = 36; o + 8 <= length; o += 8) Pointer(TablesFile, blob, at + o, 8); break;
                case "RSDT": for (int o = 36; o + 4 <= length; o += 4) Pointer(TablesFile, blob, at + o, 4); break;
            }
            checksums.Add((TablesFile, at + 9, at, length));
        }
        Pointer(RsdpFile, rsdp, 16, 4);
        if (rsdp.Length >= 36) Pointer(RsdpFile, rsdp, 24, 8);
        checksums.Add((RsdpFile, 8, 0, 20));
        if (rsdp.Length >= 36) checksums.Add((RsdpFile, 32, 0, 36));

        var loader = new List<byte[]>
        {
            Allocate(TablesFile, 64, ZoneHigh),
            Allocate(RsdpFile, 16, ZoneFseg),
        };
        foreach (var (file, offset, size) in pointers)
        {
            var e = Entry(CmdAddPointer);
            Name(e, 4, file); Name(e, 4 + LoaderNameSize, TablesFile);
            BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(4 + 2 * LoaderNameSize), (uint)offset);
            e[4 + 2 * LoaderNameSize + 4] = (byte)size;
            loader.Add(e);
        }
        foreach (var (file, offset, start, length) in checksums)
        {
            var e = Entry(CmdAddChecksum);
            Name(e, 4, file);
            BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(4 + LoaderNameSize), (uint)offset);
            BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(8 + LoaderNameSize), (uint)start);
            BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(12 + LoaderNameSize), (uint)length);
            loader.Add(e);
        }
        return (blob, rsdp, loader.SelectMany(e => e).ToArray());
    }

    private static byte[] Entry(uint command)
    {
        var e = new byte[LoaderEntrySize];
        BinaryPrimitives.WriteUInt32LittleEndian(e, command);
        return e;
    }

    private static void Name(byte[] entry, int at, string name) => Encoding.ASCII.GetBytes(name, entry.AsSpan(at, LoaderNameSize - 1));

    private static byte[] Allocate(string file, uint align, byte zone)
    {
        var e = Entry(CmdAllocate);
        Name(e, 4, file);
        BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(4 + LoaderNameSize), align);
        e[8 + LoaderNameSize] = zone;
        return e;
    }
}
