using System.Text.Json;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Balloon;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Virtio.Mem;
using KvmPS.Devices.Virtio.Net;
using KvmPS.Devices.Virtio.Rng;
using KvmPS.Devices.Virtio.Scsi;
using KvmPS.Devices.Virtio.Vsock;
using KvmPS.Vm;

namespace KvmPS.Devices.Config;

/// <summary>What a device needs from the machine when it is created.</summary>
public sealed record DeviceContext(GuestMemory Memory, IMachineControl Machine, Action<string> Log)
{
    /// <summary>A live upgrade's destination: what the devices are built without, as it comes handed over (<see cref="Vm.MachineConfig.Deferred"/>).</summary>
    public HandedOverResources Deferred { get; init; }
    /// <summary>Open files the device uses instead of opening its path (a disk's image chain, a tap); null: open by path.</summary>
    public PassedFiles? Files { get; init; }
}

/// <summary>
/// The configuration of one PCI device, kept apart from the device code. Each device type has one record here
/// and one line in <see cref="Parsers"/>; the VM creates the devices in order, in PCI slots 1, 2, 3, …
/// </summary>
public abstract record DeviceConfig
{
    /// <summary>The type name used in JSON ("type") and in --device flags.</summary>
    public abstract string Type { get; }

    /// <summary>Opens host resources (images, taps, sockets) and creates the device; errors name the file or device.</summary>
    public abstract IVirtioDevice CreateDevice(DeviceContext context);

    /// <summary>
    /// The PCI expansion ROM the device's function offers the firmware (read before the device is created, so a bad
    /// file leaves nothing half-made), or null for none (the default).
    /// </summary>
    public virtual Pci.PciExpansionRom? LoadExpansionRom() => null;

    /// <summary>The device's options as `describe` reports them (without "type").</summary>
    public abstract void Describe(Utf8JsonWriter w);

    /// <summary>Every device type: name → parser. Parsers must call <see cref="DeviceOptions.EnsureAllUsed"/>.</summary>
    private static readonly Dictionary<string, Func<DeviceOptions, DeviceConfig>> Parsers = new(StringComparer.Ordinal)
    {
        ["rng"] = RngDeviceConfig.Parse,
        ["net"] = NetDeviceConfig.Parse,
        ["block"] = BlockDeviceConfig.Parse,
        ["balloon"] = BalloonDeviceConfig.Parse,
        ["vsock"] = VsockDeviceConfig.Parse,
        [MemDeviceConfig.TypeName] = MemDeviceConfig.Parse,
        [CdromDeviceConfig.TypeName] = CdromDeviceConfig.Parse,
        [Display.DisplayDeviceConfig.TypeName] = Display.DisplayDeviceConfig.Parse,
        [Passthrough.VfioUserDeviceConfig.TypeName] = Passthrough.VfioUserDeviceConfig.Parse,
        [Passthrough.VfioDeviceConfig.TypeName] = Passthrough.VfioDeviceConfig.Parse,
    };

    public static IEnumerable<string> Types => Parsers.Keys.Order();

    public static DeviceConfig FromOptions(DeviceOptions options)
    {
        if (!Parsers.TryGetValue(options.Type, out var parse))
            throw new DeviceConfigException($"{options.Source}: unknown device type '{options.Type}' (known types: {string.Join(", ", Types)}).");
        return parse(options);
    }
}

/// <summary>What a PCI function of its own needs from the machine beyond <see cref="DeviceContext"/>.</summary>
/// <param name="FirmwareBoot">The VM boots firmware (SeaBIOS), which runs option ROMs; a kernel boot runs none.</param>
/// <param name="CreateVramSlot">Makes a KVM memory slot over host memory (with dirty logging) for a framebuffer BAR.</param>
public sealed record PciFunctionContext(DeviceContext Device, bool FirmwareBoot, Func<Display.Vram, Display.IVramSlot> CreateVramSlot)
{
    /// <summary>What a passthrough function needs: MSI routes, the I/O thread for its interrupt eventfds, memory slots for its BARs.</summary>
    public Passthrough.PassthroughHost? Passthrough { get; init; }
}

/// <summary>
/// A device that is a PCI function of its own rather than a virtio device behind the virtio PCI transport (the Bochs
/// display). The machine plugs the function <see cref="CreateFunction"/> returns in the device's slot.
/// </summary>
public abstract record PciFunctionConfig : DeviceConfig
{
    /// <summary>Opens host resources and creates the function, ROM included; errors name the file or key.</summary>
    public abstract Pci.PciDevice CreateFunction(PciFunctionContext context);

    /// <summary>Not a virtio device: the machine calls <see cref="CreateFunction"/> instead.</summary>
    public sealed override IVirtioDevice CreateDevice(DeviceContext context) =>
        throw new InvalidOperationException($"a {Type} device is a PCI function of its own, not a virtio device.");
}

/// <summary>A device that answers control-socket requests of its own (e.g. "balloon.set").</summary>
public interface IDeviceControl
{
    /// <summary>Request names this device handles; they appear in `describe`.</summary>
    IReadOnlyList<string> ControlRequests { get; }
    /// <summary>
    /// Handles one request, already read into its contract record (KvmPS.Contract.ControlRequests: unknown fields and
    /// wrong types were refused there, by name), and returns its reply record serialized through the contract
    /// (KvmPS.Contract.ControlReplies). ArgumentException becomes InvalidArgument, InvalidOperationException InvalidState.
    /// </summary>
    JsonElement HandleControlRequest(KvmPS.Contract.ControlRequest request);
}
