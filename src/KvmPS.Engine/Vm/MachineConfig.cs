namespace KvmPS.Vm;

/// <summary>What to do when the guest resets the machine.</summary>
public enum ResetPolicy { Reboot, Stop }

/// <summary>The engine-level description of one VM (the host process's JSON config maps onto this).</summary>
public sealed record MachineConfig
{
    public ulong MemoryBytes { get; init; } = 256UL << 20;
    /// <summary>
    /// Memory the guest may grow to through virtio-mem (Devices/Virtio/Mem); 0 or <see cref="MemoryBytes"/>: no
    /// hot-plug region. The region between the two is mapped but not RAM until the device plugs it.
    /// </summary>
    public ulong MemoryMaximumBytes { get; init; }
    /// <summary>Size of the hot-plug region: <see cref="MemoryMaximumBytes"/> − <see cref="MemoryBytes"/>, or 0.</summary>
    public ulong HotplugMemoryBytes => MemoryMaximumBytes > MemoryBytes ? MemoryMaximumBytes - MemoryBytes : 0;

    /// <summary>
    /// Below this address the hot-plug region may follow the boot RAM (<see cref="MemoryLayout.HotplugRegionStart"/>):
    /// the 32-bit MMIO hole, or with firmware the MMCONFIG window SeaBIOS uses, which starts lower.
    /// </summary>
    public ulong HotplugLowLimit => FirmwarePath is null ? MemoryLayout.MmioHoleStart : Boot.FirmwareLoader.Q35EcamBase;
    public int VcpuCount { get; init; } = 1;
    /// <summary>vCPUs reserved in the firmware tables for later hot-add; at least <see cref="VcpuCount"/>.</summary>
    public int MaxVcpus { get; init; }
    /// <summary>Kernel image path; null boots the built-in guest.</summary>
    public string? KernelPath { get; init; }
    public string? InitrdPath { get; init; }
    public string Cmdline { get; init; } = "";
    public GuestMemoryOptions Memory { get; init; } = new();
    public ResetPolicy OnReset { get; init; } = ResetPolicy.Reboot;
    public string KvmDevicePath { get; init; } = Interop.Kvm.DefaultDevicePath;
    /// <summary>KVM's dirty ring with this many entries per vCPU instead of the per-slot dirty bitmap; 0: the bitmap.</summary>
    public int DirtyRingEntries { get; init; }
    // --- PCI devices (Devices/Pci, Devices/Virtio) ---
    /// <summary>Plugs a virtio-rng (virtio 1.x PCI, 1af4:1044) into PCI slot 1.</summary>

    /// <summary>PCI devices in slot order (1, 2, …): virtio-rng, and the devices later issues add (Devices/Config).</summary>
    public IReadOnlyList<Devices.Config.DeviceConfig> Devices { get; init; } = [];
    /// <summary>
    /// Configured devices the running VM has lost (bit n = slot n): their slots stay empty, their images and taps are
    /// never opened, and the other devices keep their slots. Set on a reboot after a live removal, on a migration's
    /// destination (config <c>removed_devices</c>) and on a restore of a snapshot taken after one (ConfiguredDeviceSlots).
    /// </summary>
    public uint RemovedDeviceSlots { get; init; }
    /// <summary>
    /// A live upgrade's destination (docs/migration.md, "Local live upgrade"): these devices are built without opening
    /// their host resources (the running VMM holds them: images and their locks, taps, vsock listeners); they come as
    /// that VMM's open descriptors at the hand-over (Migration/DeviceHandover). Not part of the configuration file.
    /// </summary>
    public Devices.Config.HandedOverResources Deferred { get; init; }
    /// <summary>
    /// A guest reboot's machine: the open images and taps of the previous boot's configured devices, by slot, used
    /// instead of opening the paths again (a jailed VMM may not: docs/confinement.md). Not part of the configuration file.
    /// </summary>
    public IReadOnlyDictionary<int, Devices.Config.PassedFiles>? KeptFiles { get; init; }
    /// <summary>Where device errors go (malformed virtqueues, ...); null writes them to stderr.</summary>
    public Action<string>? DeviceLog { get; init; }

    // --- Firmware boot (Vm/Boot/FirmwareLoader.cs, docs/devices.md "Firmware boot") ---
    /// <summary>Firmware image (or "seabios") booted from the reset vector instead of a kernel; null boots a kernel directly.</summary>
    public string? FirmwarePath { get; init; }
    /// <summary>Firmware boot: tell SeaBIOS to use COM1 as its console (fw_cfg "etc/sercon-port").</summary>
    public bool FirmwareSerialConsole { get; init; } = true;
    /// <summary>Firmware boot: where bytes written to the debug console port 0x402 go (SeaBIOS's log); null drops them.</summary>
    public Devices.ByteSink? DebugConOutput { get; init; }
    /// <summary>
    /// Firmware boot: the PCI slots of configured block, cdrom and net devices in the order the firmware tries them
    /// (fw_cfg "bootorder", Vm/Boot/FirmwareLoader.cs); only those are tried. Null: the first disk.
    /// </summary>
    public IReadOnlyList<int>? BootOrder { get; init; }
    /// <summary>Like <see cref="BootOrder"/> for this power-on only: the host clears it for the machine a guest reboot builds.</summary>
    public IReadOnlyList<int>? BootOnce { get; init; }

    public int EffectiveMaxVcpus => Math.Max(MaxVcpus, VcpuCount);

    public void Validate()
    {
        if (VcpuCount < 1 || VcpuCount > 254) throw new ArgumentOutOfRangeException(nameof(VcpuCount), $"vCPU count {VcpuCount} is out of range (1-254).");
        if (MaxVcpus != 0 && (MaxVcpus < VcpuCount || MaxVcpus > 254))
            throw new ArgumentOutOfRangeException(nameof(MaxVcpus), $"maximum vCPUs {MaxVcpus} must be between the vCPU count ({VcpuCount}) and 254.");
        if (MemoryMaximumBytes != 0 && MemoryMaximumBytes < MemoryBytes)
            throw new ArgumentOutOfRangeException(nameof(MemoryMaximumBytes), $"maximum memory {MemoryMaximumBytes} bytes is below the boot memory {MemoryBytes} bytes (memory_bytes).");
        if (HotplugMemoryBytes % MemoryLayout.HugePageSize != 0)
            throw new ArgumentOutOfRangeException(nameof(MemoryMaximumBytes), $"maximum memory {MemoryMaximumBytes} bytes minus memory_bytes {MemoryBytes} is not a multiple of the 2 MiB virtio-mem block size.");
        if ((RemovedDeviceSlots & ~ConfiguredDeviceSlots.Removable(Devices)) is uint fixedSlots and not 0)
        {
            int slot = System.Numerics.BitOperations.TrailingZeroCount(fixedSlots);
            throw new ArgumentOutOfRangeException(nameof(RemovedDeviceSlots), $"removed device {PciAddresses.Format(slot)} cannot be removed: {ConfiguredDeviceSlots.WhyNotRemovable(Devices, slot)}.");
        }
        if (FirmwarePath is not null)
        {
            if (KernelPath is not null || InitrdPath is not null || Cmdline.Length > 0)
                throw new ArgumentOutOfRangeException(null, "firmware boot cannot be combined with kernel, initrd or cmdline (the firmware boots the first disk).");
            if (MemoryBytes > Boot.FirmwareLoader.MaxMemoryBytes)
                throw new ArgumentOutOfRangeException(null, $"firmware boot supports at most {Boot.FirmwareLoader.MaxMemoryBytes >> 20} MiB of memory (RAM must end below the MMCONFIG window at 0x{Boot.FirmwareLoader.Q35EcamBase:x}).");
        }
    }
}
