using System.Globalization;
using KvmPS.Contract;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Vmm;

/// <summary>
/// Turns a <see cref="VmDefinition"/> into the kvmps-vmm configuration record of the wire contract
/// (<see cref="VmmConfiguration"/>, docs/vmm.md "Configuration").
/// Call <see cref="VmmFeatureSupport.EnsureSupported"/> first: this maps only what the VMM supports.
/// </summary>
public static class VmmConfigBuilder
{
    /// <summary>kvmps-vmm's <c>on_crash</c>: we always keep a crashed VM up so its crash reason can be read.</summary>
    public const GuestCrashAction OnCrash = GuestCrashAction.Stay;

    /// <summary>The configuration as the JSON file kvmps-vmm reads with <c>--config</c>.</summary>
    /// <param name="controlSocketPath">Also passed on the command line (liveness checks read it there).</param>
    /// <param name="serialLogPath">Guest console output, appended.</param>
    /// <param name="resolveDiskPath">Turns a definition's disk path into the host path (the store's disk directory for relative ones).</param>
    /// <param name="resolveNetworkBridge">Turns a network name (an adapter's <c>Network</c>) into its bridge; needed only when an adapter names one.</param>
    public static byte[] Build(VmDefinition definition, string controlSocketPath, string serialLogPath, Func<string, string>? resolveDiskPath = null, Func<string, string>? resolveNetworkBridge = null) =>
        ContractJson.WriteConfiguration(BuildConfiguration(definition, controlSocketPath, serialLogPath, resolveDiskPath, resolveNetworkBridge));

    /// <inheritdoc cref="Build"/>
    public static VmmConfiguration BuildConfiguration(VmDefinition definition, string controlSocketPath, string serialLogPath, Func<string, string>? resolveDiskPath = null, Func<string, string>? resolveNetworkBridge = null)
    {
        ArgumentNullException.ThrowIfNull(definition);
        resolveDiskPath ??= Path.GetFullPath;
        var configuration = definition.Boot switch
        {
            DirectKernelBoot direct => new VmmConfiguration
            {
                Kernel = Path.GetFullPath(direct.KernelPath),
                Initrd = direct.InitrdPath is null ? null : Path.GetFullPath(direct.InitrdPath),
                Cmdline = direct.Cmdline,
            },
            // no kernel: the VMM boots its built-in guest
            DefaultGuestBoot builtIn => new VmmConfiguration { Cmdline = builtIn.Cmdline },
            // 'seabios' names the VMM's built-in SeaBIOS (FirmwareLoader resolves it), not a file in the current folder.
            FirmwareBoot firmware => new VmmConfiguration
            {
                Firmware = firmware.FirmwarePath == Store.AllowedPaths.BuiltInFirmwareAlias ? firmware.FirmwarePath : Path.GetFullPath(firmware.FirmwarePath),
            },
            _ => throw new NotSupportedException($"VM '{definition.Name}': boot source {definition.Boot.GetType().Name} is not supported by kvmps-vmm"),
        };
        var devices = Devices(definition, resolveDiskPath, resolveNetworkBridge);
        return configuration with
        {
            MemoryBytes = definition.Memory.StartupBytes,
            // Memory above the startup amount is hot-plugged (virtio-mem); below it the balloon takes it back
            // (Hyper-V's dynamic memory has the same two directions). No maximum above startup: no virtio-mem device.
            MemoryMaximumBytes = HotplugMaximum(definition.Memory),
            Vcpus = definition.Vcpus.Count,
            MaxVcpus = definition.Vcpus.Maximum,
            Hugepages = definition.MemoryBacking.HugePages switch
            {
                HugePagesMode.None => HugePageBacking.None,
                HugePagesMode.Thp => HugePageBacking.Thp,
                HugePagesMode.Hugetlbfs => HugePageBacking.Hugetlbfs,
                var other => throw new NotSupportedException($"huge-page mode {other}"),
            },
            Ksm = definition.MemoryBacking.KsmEnabled,
            NumaNode = definition.MemoryBacking.NumaNode,
            // Guest RAM in memfds, so a live upgrade (Update-KvmVmm) hands it to the new VMM instead of copying it. Not with
            // KSM: it merges only anonymous memory (such a VM is upgraded by copying its memory).
            Memfd = definition.MemoryBacking.KsmEnabled ? null : true,
            Devices = devices,
            BootOrder = BootAddresses(definition.BootOrder, devices),
            BootOnce = definition.BootOnce is { } once ? BootAddresses([once, .. definition.BootOrder.Where(d => d != once)], devices) : null,
            // The VNC socket lives beside the control socket, in the VM's folder (0700): only the store's owner reaches it.
            Vnc = definition.Display is { } display ? new VncSpec
            {
                UnixPath = Path.Combine(Path.GetDirectoryName(controlSocketPath) ?? ".", Store.VmStore.VncSocketFileName),
                Tcp = display.Tcp,
                PasswordFile = display.PasswordFile is null ? null : Path.GetFullPath(display.PasswordFile),
            } : null,
            Serial = "file:" + serialLogPath,
            // The console log's bound (rotation at a size, a number of files kept), a VM setting.
            SerialLogMaxBytes = definition.LogMaxBytes,
            SerialLogFiles = definition.LogFileCount,
            ControlSocket = controlSocketPath,
            OnCrash = OnCrash,
            OnReset = GuestResetAction.Reboot,
        };
    }

    /// <summary>The PCI address kvmps-vmm gives the device at <paramref name="index"/> of the configuration's devices (slot index + 1).</summary>
    public static string PciAddress(int index) => string.Create(CultureInfo.InvariantCulture, $"00:{index + 1:x2}.0");

    /// <summary>
    /// The boot order as PCI addresses (<c>boot_order</c>): each kind's devices in slot order (disks: the boot disk is
    /// already first). Null for an empty order: the VMM's default, the first disk.
    /// </summary>
    private static List<string>? BootAddresses(IReadOnlyList<BootDevice> order, List<DeviceSpec> devices)
    {
        if (order.Count == 0)
            return null;
        var addresses = new List<string>();
        foreach (var kind in order)
            for (int i = 0; i < devices.Count; i++)
                if ((kind, devices[i]) is (BootDevice.Disk, BlockDeviceSpec) or (BootDevice.Dvd, CdromDeviceSpec) or (BootDevice.Network, NetDeviceSpec))
                    addresses.Add(PciAddress(i));
        return addresses;
    }

    /// <summary>
    /// PCI devices in slot order: the disks (the firmware boot disk first, so SeaBIOS boots it), then the network
    /// adapters, then the CD/DVD drives, then the balloon, then the display, then the passthrough devices (kernel VFIO:
    /// PciPassthrough, then the SR-IOV network adapters' VFs; then vfio-user; last, so a VM without DVD drives, display or passthrough keeps the slots it always had). Each disk gets the serial "NAME-dN" (as far as virtio-blk's 20 bytes allow) so a guest can tell them apart.
    /// </summary>
    private static List<DeviceSpec> Devices(VmDefinition definition, Func<string, string> resolveDiskPath, Func<string, string>? resolveNetworkBridge)
    {
        var disks = definition.Disks.Select((disk, index) => (disk, index)).ToList();
        if (definition.Boot is FirmwareBoot { BootDiskIndex: var boot } && boot > 0 && boot < disks.Count)
        {
            var first = disks[boot];
            disks.RemoveAt(boot);
            disks.Insert(0, first);
        }
        var devices = new List<DeviceSpec>();
        foreach (var (_, index) in disks)
            devices.Add(DiskDevice(definition, index, resolveDiskPath));
        for (int i = 0; i < definition.NetworkAdapters.Count; i++)
            if (definition.NetworkAdapters[i].SriovVf is null) // an SR-IOV adapter is a passthrough device, below
                devices.Add(NetworkAdapterDevice(definition, i, resolveNetworkBridge: resolveNetworkBridge));
        foreach (var drive in definition.DvdDrives)
            devices.Add(new CdromDeviceSpec { Path = drive.Path is null ? null : resolveDiskPath(drive.Path) });
        if (definition.BalloonEnabled)
            // deflate_on_oom: a guest short of memory may take pages back rather than fail; stats every 5 s for Invoke-KvmBalloon.
            devices.Add(new BalloonDeviceSpec { DeflateOnOom = true, StatsIntervalS = 5 });
        if (definition.Display is not null)
            devices.Add(new DisplayDeviceSpec()); // the VMM's defaults: 16 MiB VRAM, 1024x768 preferred, vgabios-bochs-display with firmware
        foreach (var address in HostDevices.PciPassthroughHost.HostFunctions(definition))
            devices.Add(new VfioDeviceSpec { Host = address.ToString() });
        foreach (var socket in definition.VfioUserDevices)
            devices.Add(new VfioUserDeviceSpec { Socket = socket });
        return devices;
    }

    /// <summary>
    /// The virtio-blk device for disk <paramref name="index"/> of <paramref name="definition"/>, with the serial
    /// "NAME-dN" (its last 20 characters: virtio-blk's limit). The one mapping for a VM's start and a disk hot-plugged
    /// into it (<c>device.add</c>).
    /// </summary>
    public static BlockDeviceSpec DiskDevice(VmDefinition definition, int index, Func<string, string>? resolveDiskPath = null)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var disk = definition.Disks[index];
        return new BlockDeviceSpec
        {
            Path = (resolveDiskPath ?? Path.GetFullPath)(disk.Path),
            Format = disk.Format == DiskFormat.Qcow2 ? BlockImageFormat.Qcow2 : BlockImageFormat.Raw,
            ReadOnly = disk.ReadOnly,
            Serial = DiskSerial(definition.Name, index),
        };
    }

    /// <summary>"NAME-dN", its last 20 characters (virtio-blk's limit).</summary>
    public static string DiskSerial(string vmName, int index)
    {
        string serial = $"{vmName}-d{index}";
        return serial.Length <= 20 ? serial : serial[^20..];
    }

    /// <summary>
    /// The virtio-net device for network adapter <paramref name="index"/>: its tap, or <paramref name="generatedTap"/>
    /// (default <see cref="GeneratedTapName"/> for the index) for one that names only a bridge. The one mapping for a
    /// VM's start and an adapter hot-plugged into it (<c>device.add</c>). An adapter on a KvmPS network gets the
    /// network's bridge from <paramref name="resolveNetworkBridge"/> (the VMM makes the tap and enslaves it, as for a bridge).
    /// </summary>
    public static NetDeviceSpec NetworkAdapterDevice(VmDefinition definition, int index, string? generatedTap = null, Func<string, string>? resolveNetworkBridge = null)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var nic = definition.NetworkAdapters[index];
        if (nic.SriovVf is { } vf)
            throw new InvalidOperationException($"VM '{definition.Name}': adapter {index} is SR-IOV VF {vf}, a passthrough device, not virtio-net");
        var bridge = nic.NetworkName is { } network
            ? (resolveNetworkBridge ?? throw new InvalidOperationException($"VM '{definition.Name}': adapter {index} is on network '{network}', but no network resolver was given"))(network)
            : nic.BridgeName;
        return new NetDeviceSpec
        {
            Tap = nic.TapName ?? generatedTap ?? GeneratedTapName(definition.Name, index),
            Bridge = bridge,
            Mac = nic.MacAddress.ToString(),
            RomPath = NetworkBootRom(definition),
        };
    }

    /// <summary>Debian's iPXE ROM for virtio-net (package ipxe-qemu), the one QEMU attaches to its virtio-net-pci by default.</summary>
    public const string IpxeVirtioRomPath = "/usr/lib/ipxe/qemu/pxe-virtio.rom";

    /// <summary>Set to 0 (or off/false/no) to start firmware-booted VMs without the iPXE ROM on their adapters.</summary>
    public const string NetworkBootRomVariable = "KVMPS_NETWORK_BOOT_ROM";

    /// <summary>
    /// The expansion ROM a firmware-booted (SeaBIOS) VM's adapters carry, as QEMU gives its NICs one: iPXE, when the
    /// file is installed, so such a VM can boot from the network when it has no bootable disk. A kernel boot never
    /// runs option ROMs, so it gets none; <see cref="NetworkBootRomVariable"/> turns it off host-wide.
    /// </summary>
    public static string? NetworkBootRom(VmDefinition definition) =>
        NetworkBootRom(definition, Environment.GetEnvironmentVariable(NetworkBootRomVariable), File.Exists(IpxeVirtioRomPath));

    /// <summary>The rule of <see cref="NetworkBootRom(VmDefinition)"/> with the setting and the file's presence given.</summary>
    public static string? NetworkBootRom(VmDefinition definition, string? setting, bool romInstalled)
    {
        ArgumentNullException.ThrowIfNull(definition);
        if (definition.Boot is not FirmwareBoot || !romInstalled) return null;
        return setting?.Trim().ToLowerInvariant() is "0" or "off" or "false" or "no" ? null : IpxeVirtioRomPath;
    }

    /// <summary>A stable tap name for an adapter that names only a bridge: "kv" + 8 hex digits of the VM name + "n" + index (≤ 15 bytes, IFNAMSIZ).</summary>
    public static string GeneratedTapName(string vmName, int index)
    {
        uint hash = 2166136261;
        foreach (char c in vmName) hash = (hash ^ c) * 16777619; // FNV-1a: stable across processes, unlike string.GetHashCode
        return string.Create(CultureInfo.InvariantCulture, $"kv{hash:x8}n{index}");
    }

    /// <summary>
    /// The VMM's <c>memory_maximum_bytes</c>: the definition's maximum when it is above the startup memory, rounded down
    /// to startup + whole 2 MiB virtio-mem blocks (the VMM hot-plugs only whole blocks; a startup amount that is not
    /// itself a multiple of 2 MiB would otherwise make the VMM refuse to start). Null: no virtio-mem device.
    /// </summary>
    internal static long? HotplugMaximum(MemorySettings memory)
    {
        long blocks = (memory.MaximumBytes - memory.StartupBytes) / VmDefinition.HugePageBytes;
        return blocks > 0 ? memory.StartupBytes + blocks * VmDefinition.HugePageBytes : null;
    }
}
