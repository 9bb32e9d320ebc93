using System.Text.Json.Serialization;

namespace KvmPS.Contract;

/// <summary>
/// The kvmps-vmm configuration file (<c>--config FILE</c>, docs/vmm.md "Configuration"), and <c>config.json</c> in a
/// snapshot directory. Management writes it with <see cref="ContractJson.WriteConfiguration"/>; the VMM reads it with
/// <see cref="ContractJson.ReadConfiguration"/>. Every field is optional (null: the VMM's default); unknown fields
/// are rejected, naming the field. Sizes are bytes and say so in the name.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record VmmConfiguration
{
    /// <summary>Linux bzImage or ELF64 kernel; null boots the built-in guest (or <see cref="Firmware"/>).</summary>
    public string? Kernel { get; init; }
    public string? Initrd { get; init; }
    public string? Cmdline { get; init; }
    /// <summary>Guest RAM in bytes (default 256 MiB).</summary>
    public long? MemoryBytes { get; init; }
    /// <summary>
    /// Memory the guest may grow to while it runs (virtio-mem, <c>memory.set</c>); null or <see cref="MemoryBytes"/>:
    /// none. Above it, the VMM adds a <see cref="MemDeviceSpec"/> when <see cref="Devices"/> has none.
    /// </summary>
    public long? MemoryMaximumBytes { get; init; }
    /// <summary>vCPUs at boot (default 1).</summary>
    public int? Vcpus { get; init; }
    /// <summary>vCPUs described in the firmware tables for hot-add (default: <see cref="Vcpus"/>).</summary>
    public int? MaxVcpus { get; init; }
    /// <summary><c>stdio</c>, <c>none</c> or <c>file:PATH</c> (appended); default <c>stdio</c>.</summary>
    public string? Serial { get; init; }
    /// <summary>With <c>serial: file:PATH</c>: the size at which PATH is rotated to PATH.1 (0: no limit); default 4 MiB.</summary>
    public long? SerialLogMaxBytes { get; init; }
    /// <summary>With <c>serial: file:PATH</c>: rotated files kept beside PATH (PATH.1 … PATH.N); default 3.</summary>
    public int? SerialLogFiles { get; init; }
    public string? ControlSocket { get; init; }
    public HugePageBacking? Hugepages { get; init; }
    public bool? Ksm { get; init; }
    /// <summary>Guest RAM in memfds (MAP_SHARED) instead of anonymous memory, so a local live upgrade passes it instead of copying it (docs/migration.md).</summary>
    public bool? Memfd { get; init; }
    /// <summary>
    /// KVM's dirty ring with this many entries per vCPU (a power of two, 1024-65536) instead of the per-slot dirty
    /// bitmap, for migration and diff snapshots (QEMU's <c>dirty-ring-size</c>); absent or 0: the bitmap.
    /// </summary>
    public int? DirtyRingEntries { get; init; }
    public int? NumaNode { get; init; }
    public GuestResetAction? OnReset { get; init; }
    /// <summary>Default: <c>stay</c> with a control socket, else <c>exit</c>.</summary>
    public GuestCrashAction? OnCrash { get; init; }
    /// <summary>Path of the KVM device (default /dev/kvm).</summary>
    public string? KvmDevice { get; init; }
    /// <summary>Shorthand for an <see cref="RngDeviceSpec"/> in <see cref="Devices"/>.</summary>
    public bool? Rng { get; init; }
    /// <summary>PCI devices in slot order (00:01.0, 00:02.0, …).</summary>
    public IReadOnlyList<DeviceSpec>? Devices { get; init; }
    /// <summary>
    /// PCI addresses (<c>00:SS.0</c>) of <see cref="Devices"/> entries the VM has lost by a live removal: the slot stays
    /// empty (the device is neither created nor its image opened) and the other devices keep their slots. A migration's
    /// destination for a VM that lost a configured disk or adapter names it here; only virtio-net devices and virtio-blk
    /// disks other than the first can be listed.
    /// </summary>
    public IReadOnlyList<string>? RemovedDevices { get; init; }
    /// <summary>A BIOS image (or <c>seabios</c>) booted from the reset vector instead of a kernel.</summary>
    public string? Firmware { get; init; }
    /// <summary>The debug console port 0x402: <c>none</c>, <c>stderr</c> or <c>file:PATH</c>.</summary>
    public string? Debugcon { get; init; }
    /// <summary>
    /// PCI addresses (<c>00:SS.0</c>) of <see cref="Devices"/> entries (block, cdrom, net) in the order the firmware
    /// tries them (fw_cfg <c>bootorder</c>, docs/devices.md "Boot order"); absent: the first block device.
    /// </summary>
    public IReadOnlyList<string>? BootOrder { get; init; }
    /// <summary>
    /// Like <see cref="BootOrder"/>, for the first power-on only: a guest reboot goes back to <see cref="BootOrder"/>
    /// (Hyper-V's and virsh's one-time boot device).
    /// </summary>
    public IReadOnlyList<string>? BootOnce { get; init; }
    /// <summary>An RFB 3.8 (VNC) server on the <see cref="DisplayDeviceSpec"/> and the PS/2 keyboard and mouse.</summary>
    public VncSpec? Vnc { get; init; }
}

/// <summary>
/// Where the VMM's VNC server listens (docs/display.md). At least one of <see cref="UnixPath"/> and <see cref="Tcp"/>;
/// a TCP listener on an address other than loopback needs <see cref="PasswordFile"/>.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record VncSpec
{
    /// <summary>A Unix socket path (mode 0600), the default listener.</summary>
    public string? UnixPath { get; init; }
    /// <summary><c>ADDR:PORT</c>, e.g. <c>127.0.0.1:5901</c>; absent: no TCP listener.</summary>
    public string? Tcp { get; init; }
    /// <summary>A file whose first line is the VNC password (VNC authentication, at most 8 characters used).</summary>
    public string? PasswordFile { get; init; }
}

[JsonConverter(typeof(SnakeCaseEnumConverter<HugePageBacking>))]
public enum HugePageBacking
{
    None,
    /// <summary>Transparent huge pages (MADV_HUGEPAGE).</summary>
    Thp,
    /// <summary>MAP_HUGETLB from the hugetlbfs pool.</summary>
    Hugetlbfs,
}

/// <summary>What a guest reset does.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<GuestResetAction>))]
public enum GuestResetAction { Reboot, Stop }

/// <summary>What a guest crash does: stay up in Crashed for inspection, or exit with <see cref="VmmExitCode.GuestCrashed"/>.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<GuestCrashAction>))]
public enum GuestCrashAction { Stay, Exit }

[JsonConverter(typeof(SnakeCaseEnumConverter<BlockImageFormat>))]
public enum BlockImageFormat { Auto, Raw, Qcow2 }

/// <summary>
/// One PCI device of <see cref="VmmConfiguration.Devices"/>. On the wire an object whose <c>type</c> names the record
/// (any position in the object); each record rejects fields it does not know. Values (ranges, MAC syntax, interface
/// names) are checked by the VMM's device configuration, which also accepts the same keys as <c>--device TYPE,k=v</c>.
/// </summary>
[JsonConverter(typeof(DeviceSpecConverter))]
public abstract record DeviceSpec
{
    /// <summary>The <c>type</c> on the wire.</summary>
    [JsonIgnore] public abstract string Type { get; }
}

/// <summary>virtio-blk on a raw or qcow2 image.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record BlockDeviceSpec : DeviceSpec
{
    public const string TypeName = "block";
    [JsonIgnore] public override string Type => TypeName;
    public required string Path { get; init; }
    public BlockImageFormat? Format { get; init; }
    public bool? ReadOnly { get; init; }
    /// <summary>What VIRTIO_BLK_T_GET_ID returns: at most 20 printable ASCII characters.</summary>
    public string? Serial { get; init; }
    public bool? Discard { get; init; }
}

/// <summary>virtio-net on a Linux tap (created when missing), optionally attached to a bridge.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record NetDeviceSpec : DeviceSpec
{
    public const string TypeName = "net";
    [JsonIgnore] public override string Type => TypeName;
    public required string Tap { get; init; }
    public string? Bridge { get; init; }
    /// <summary>aa:bb:cc:dd:ee:ff; default derived from the tap name.</summary>
    public string? Mac { get; init; }
    public int? Mtu { get; init; }
    /// <summary>A PCI expansion ROM image for the function (<c>rom_path</c>; e.g. iPXE's pxe-virtio.rom, which SeaBIOS runs).</summary>
    public string? RomPath { get; init; }
}

/// <summary>
/// A CD/DVD drive: a virtio-scsi controller with one CD-ROM LUN (target 0, LUN 0) on a read-only ISO 9660 image,
/// which SeaBIOS boots (El Torito) and Linux's virtio_scsi + sr drivers read (docs/devices.md "CD/DVD").
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record CdromDeviceSpec : DeviceSpec
{
    public const string TypeName = "cdrom";
    [JsonIgnore] public override string Type => TypeName;
    /// <summary>The ISO image; absent: an empty drive (media can be inserted later with <c>media.change</c>).</summary>
    public string? Path { get; init; }
}

/// <summary>
/// A Bochs display (PCI 1234:1111): a linear framebuffer in BAR 0 and the DISPI mode registers in BAR 2, with a VGA
/// BIOS as its expansion ROM when the VM boots firmware (docs/display.md).
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record DisplayDeviceSpec : DeviceSpec
{
    public const string TypeName = "display";
    [JsonIgnore] public override string Type => TypeName;
    /// <summary>Framebuffer memory (BAR 0): a power of two from 4 MiB to 256 MiB; default 16 MiB.</summary>
    public long? VramBytes { get; init; }
    /// <summary>The mode the EDID offers as preferred; default 1024x768.</summary>
    public int? WidthPixels { get; init; }
    public int? HeightPixels { get; init; }
    /// <summary>The VGA BIOS; default with firmware: /usr/share/seabios/vgabios-bochs-display.bin; <c>none</c>: no ROM.</summary>
    public string? RomPath { get; init; }
}

/// <summary>
/// A PCI device served by another process over vfio-user (QEMU's docs/interop/vfio-user.rst): the VMM is the client,
/// maps guest RAM for the server's DMA and gives it eventfds for MSI-X (docs/devices.md "Passthrough").
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record VfioUserDeviceSpec : DeviceSpec
{
    public const string TypeName = "vfio-user";
    [JsonIgnore] public override string Type => TypeName;
    /// <summary>The server's Unix socket path.</summary>
    public required string Socket { get; init; }
}

/// <summary>
/// A host PCI function passed through with kernel VFIO (bound to vfio-pci; its IOMMU group held by this VM).
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record VfioDeviceSpec : DeviceSpec
{
    public const string TypeName = "vfio";
    [JsonIgnore] public override string Type => TypeName;
    /// <summary>The host function's address, DDDD:BB:DD.F.</summary>
    public required string Host { get; init; }
}

/// <summary>virtio-balloon.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record BalloonDeviceSpec : DeviceSpec
{
    public const string TypeName = "balloon";
    [JsonIgnore] public override string Type => TypeName;
    public bool? DeflateOnOom { get; init; }
    /// <summary>How often the driver is asked for fresh statistics, in seconds (0: never asked).</summary>
    public int? StatsIntervalS { get; init; }
}

/// <summary>virtio-rng, fed by the host's getrandom. No options.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record RngDeviceSpec : DeviceSpec
{
    public const string TypeName = "rng";
    [JsonIgnore] public override string Type => TypeName;
}

/// <summary>virtio-mem over the hot-plug region between memory_bytes and memory_maximum_bytes.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record MemDeviceSpec : DeviceSpec
{
    public const string TypeName = "mem";
    [JsonIgnore] public override string Type => TypeName;
    /// <summary>Plug granularity: a power of two from 2 MiB (the default) to 1 GiB.</summary>
    public long? BlockSizeBytes { get; init; }
}

/// <summary>virtio-vsock with the host side as Unix sockets.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record VsockDeviceSpec : DeviceSpec
{
    public const string TypeName = "vsock";
    [JsonIgnore] public override string Type => TypeName;
    /// <summary>3 or more.</summary>
    public required long GuestCid { get; init; }
    /// <summary>Host → guest connections are accepted here; guest → host port P goes to <c>uds_path_P</c>.</summary>
    public required string UdsPath { get; init; }
}
