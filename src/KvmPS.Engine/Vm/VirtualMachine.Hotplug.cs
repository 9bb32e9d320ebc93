using System.Buffers;
using System.Text;
using System.Text.Json;
using KvmPS.Acpi;
using KvmPS.Devices;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Virtio.Net;
using KvmPS.State;

namespace KvmPS.Vm;

/// <summary>A device plugged into a running machine: its slot, its configuration (as <c>describe</c> shows it) and its function.</summary>
public sealed record HotpluggedDevice(int Slot, DeviceConfig Config, IHotplugFunction Part)
{
    public string PciAddress => PciAddresses.Format(Slot);
    /// <summary>The virtio device, or null for a passthrough function.</summary>
    public IVirtioDevice? Device => (Part as VirtioHotplugFunction)?.Device;
}

/// <summary>A configured (cold-plugged) device the machine has: its slot (1 + its index in the configuration), its configuration and device.</summary>
public sealed record ConfiguredDevice(int Slot, DeviceConfig Config, IVirtioDevice Device)
{
    public string PciAddress => PciAddresses.Format(Slot);
}

/// <summary>The <c>bus:slot.function</c> text of a function on bus 0 (<c>00:07.0</c>).</summary>
public static class PciAddresses
{
    public static string Format(int slot) => $"00:{slot:x2}.0";

    /// <summary>Parses <c>00:SS.0</c> (hex slot 01-1f, function 0 of bus 0); ArgumentException naming the text otherwise.</summary>
    public static int Parse(string text, string field)
    {
        var t = text.Trim();
        if (t.Length == 7 && t[2] == ':' && t[5] == '.' && t[..2] == "00" && t[6] == '0'
            && int.TryParse(t.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out int slot) && slot is >= 1 and < 32)
            return slot;
        throw new ArgumentException($"{field} '{text}' is not a PCI address on bus 0 of the form 00:SS.0 with slot 01-1f.");
    }
}

/// <summary>
/// ACPI PCI hot-plug of virtio-blk and virtio-net functions and of passthrough functions (vfio-user, kernel VFIO)
/// (docs/acpi.md "PCI hot-plug"). Slots 1..N hold the
/// configured (cold-plugged) devices and are not hot-pluggable; slots N+1..31 are, each with an ACPI slot object.
/// A device is created and plugged at once (BARs from the PCI windows, MSI-X, ioeventfds on the I/O thread) and the
/// guest gets an insert event; a removal is only a request until the guest ejects the slot (<c>_EJ0</c>), and only
/// then is the device unplugged and disposed (ioeventfds, MSI routes, its threads, the image or tap; for a passthrough
/// function its irqfds, BAR memory slots and its socket or VFIO fds). Configured
/// devices that can be removed live (<see cref="ConfiguredDeviceSlots"/>: virtio-net, virtio-blk but the first disk)
/// have slot objects too and leave the same way; their slots stay empty (<see cref="RemovedConfiguredSlots"/>: the
/// other configured devices keep their slots, across a reboot, a snapshot and a migration too).
/// </summary>
public sealed partial class VirtualMachine
{
    private readonly object _hotplugLock = new();
    private HotpluggedDevice[] _hotplugged = [];
    private readonly HashSet<int> _releasing = new(); // slots being unplugged after an eject (under _hotplugLock)

    /// <summary>The PCI hot-plug controller the DSDT's slot objects use (Acpi/PciHotplugController).</summary>
    public PciHotplugController PciHotplug { get; private set; } = null!;

    /// <summary>The configured devices the machine has now (those removed live are gone), in slot order.</summary>
    public IReadOnlyList<ConfiguredDevice> ConfiguredDevices => Volatile.Read(ref _configured);

    private uint _removedConfigured; // under _hotplugLock; starts as Config.RemovedDeviceSlots
    /// <summary>Configured slots whose device the running VM lost (bit n = slot n): ejected by the guest, or absent since the build.</summary>
    public uint RemovedConfiguredSlots { get { lock (_hotplugLock) return _removedConfigured; } }

    /// <summary>Whether <paramref name="slot"/> holds a device now (configured or hot-plugged).</summary>
    public bool IsPciSlotOccupied(int slot) => ConfiguredDevices.Any(d => d.Slot == slot) || HotpluggedDevices.Any(d => d.Slot == slot);

    /// <summary>Devices plugged while the VM ran (or restored as such), by slot.</summary>
    public IReadOnlyList<HotpluggedDevice> HotpluggedDevices => Volatile.Read(ref _hotplugged);

    /// <summary>Raised (on the ejecting vCPU's thread) after the device in a slot was released following the guest's eject.</summary>
    public event Action<int>? PciDeviceReleased;

    private void BuildPciHotplug()
    {
        _removedConfigured = Config.RemovedDeviceSlots;
        PciHotplug = new PciHotplugController(PciHotplugAcpi.HotplugSlotsAfter(Config.Devices.Count),
            ConfiguredDeviceSlots.Removable(Config.Devices), Pm, IsPciSlotOccupied);
        PciHotplug.Ejected += ReleaseEjected;
        PortBus.Register(PciHotplug, MemoryLayout.PciHotplugPort, PciHotplugController.Length);
    }

    /// <summary>The I/O thread and ioeventfd registrar, created with the first device (a VM without devices has none until a hot-add).</summary>
    private KvmIoEventRegistrar EnsureIoLoop()
    {
        if (_ioEvents is not null) return _ioEvents;
        var log = DeviceLogger;
        _ioLoop = new IoEventLoop(log);
        _ioEvents = new KvmIoEventRegistrar(_vm!, _ioLoop, log);
        if (_deviceSet is not null) _deviceSet = new DeviceSet(_platformDevices, Pci, _ioLoop);
        return _ioEvents;
    }

    /// <summary>
    /// Plugs a new virtio-blk, virtio-net or passthrough (vfio-user, vfio) device into <paramref name="slot"/> (null: the lowest free hot-plug slot)
    /// of the running or paused machine and raises the insert event. Bad input (another device type, a slot that is
    /// not hot-pluggable or is taken, no free slot, an image or tap that cannot be opened, a vfio-user server that cannot be
    /// reached or fails during the set-up: <see cref="KvmPS.Devices.Passthrough.PassthroughException"/>) throws naming it and leaves
    /// the machine as it was.
    /// </summary>
    public HotpluggedDevice AddPciDevice(DeviceConfig config, int? slot, PassedFiles? files = null)
    {
        if (!IsHotpluggable(config))
            throw new ArgumentException($"a {config.Type} device cannot be hot-plugged (only block, net, vfio-user and vfio can).");
        lock (_stateLock)
        {
            if (State is not (VmState.Running or VmState.Paused)) throw new InvalidOperationException($"devices can be hot-plugged only while the VM runs or is paused (it is {State}).");
            HotpluggedDevice added;
            lock (_hotplugLock)
            {
                int at = slot ?? FreeHotplugSlot();
                CheckFreeHotplugSlot(at);
                added = Plug(config, at, files);
                if (_partsPaused) foreach (var p in added.Part.Function.PausableParts()) p.Pause(); // a paused VM stays quiescent
                Volatile.Write(ref _hotplugged, [.. _hotplugged, added]);
            }
            PciHotplug.Insert(added.Slot);
            return added;
        }
    }

    internal static bool IsHotpluggable(DeviceConfig config) =>
        config is BlockDeviceConfig or NetDeviceConfig or KvmPS.Devices.Passthrough.VfioUserDeviceConfig or KvmPS.Devices.Passthrough.VfioDeviceConfig;

    private int FreeHotplugSlot()
    {
        for (int s = 1; s < 32; s++)
            if (PciHotplug.IsHotplugSlot(s) && Pci[s] is null && !_releasing.Contains(s)) return s;
        throw new InvalidOperationException($"no free PCI hot-plug slot (slots {HotplugSlotRange} are all in use).");
    }

    private string HotplugSlotRange => PciHotplug.HotplugSlots == 0 ? "none"
        : $"{PciAddresses.Format(System.Numerics.BitOperations.TrailingZeroCount(PciHotplug.HotplugSlots))}-{PciAddresses.Format(31)}";

    private void CheckFreeHotplugSlot(int slot)
    {
        if (!PciHotplug.IsHotplugSlot(slot))
            throw new ArgumentException($"PCI slot {PciAddresses.Format(slot)} is not a hot-plug slot (the configured devices hold 00:01.0-{PciAddresses.Format(Config.Devices.Count)}; hot-plug slots are {HotplugSlotRange}).");
        if (Pci[slot] is { } other)
            throw new ArgumentException($"PCI slot {PciAddresses.Format(slot)} is taken by {other.Name}.");
        if (_releasing.Contains(slot))
            throw new ArgumentException($"PCI slot {PciAddresses.Format(slot)} is taken: its device is being released after the guest's eject.");
    }

    /// <summary>
    /// Creates the device (opens its image or tap, or takes the passed files; a passthrough function connects, maps
    /// guest RAM for DMA and takes its BARs and interrupts) and plugs it into <paramref name="slot"/>; on failure nothing
    /// stays.
    /// </summary>
    private HotpluggedDevice Plug(DeviceConfig config, int slot, PassedFiles? files = null)
    {
        var ioEvents = EnsureIoLoop();
        var context = new DeviceContext(Memory, this, DeviceLog.Limit(DeviceLogger, config.Type)) { Files = files };
        if (config is PciFunctionConfig functionConfig)
        {
            var function = CreateFunction(functionConfig, context);
            if (function is not KvmPS.Devices.Passthrough.PassthroughDevice passthrough)
            {
                function.Dispose();
                throw new ArgumentException($"a {config.Type} device cannot be hot-plugged.");
            }
            try { Pci.AddDevice(slot, passthrough); }
            catch { passthrough.Dispose(); throw; }
            return new HotpluggedDevice(slot, config, new PassthroughHotplugFunction(passthrough));
        }
        var rom = config.LoadExpansionRom();
        var device = config.CreateDevice(context);
        VirtioPciTransport transport;
        try { Pci.AddDevice(slot, transport = VirtioPciTransport.WithRom(new VirtioPciTransport(device, Memory, _msiRouter!, ioEvents), rom)); }
        catch { device.Dispose(); throw; }
        return new HotpluggedDevice(slot, config, new VirtioHotplugFunction(device, transport));
    }

    /// <summary>
    /// Asks the guest to release the device at <paramref name="slot"/> (an eject request): a hot-plugged one, or a
    /// configured one that can leave a running VM (<see cref="ConfiguredDeviceSlots"/>). A configured device that must
    /// stay, one already removed, or an empty slot is refused naming the address and why. The device stays until the
    /// guest ejects it.
    /// </summary>
    public void RequestPciDeviceRemoval(int slot)
    {
        lock (_stateLock)
        {
            if (State is not (VmState.Running or VmState.Paused)) throw new InvalidOperationException($"devices can be removed only while the VM runs or is paused (it is {State}).");
            if (!HotpluggedDevices.Any(d => d.Slot == slot))
            {
                if (slot < 1 || slot > Config.Devices.Count)
                    throw new ArgumentException($"no hot-plugged device at PCI address {PciAddresses.Format(slot)}.");
                string type = Config.Devices[slot - 1].Type;
                if ((RemovedConfiguredSlots & (1u << slot)) != 0)
                    throw new ArgumentException($"the configured {type} device {PciAddresses.Format(slot)} was already removed from the running VM.");
                if (ConfiguredDeviceSlots.WhyNotRemovable(Config.Devices, slot) is { } why)
                    throw new ArgumentException($"PCI device {PciAddresses.Format(slot)} ({type}) is part of the VM's configuration (cold-plugged) and cannot be removed while it runs: {why}.");
                if (!PciHotplug.HasSlotObject(slot))
                    throw new ArgumentException($"PCI device {PciAddresses.Format(slot)} ({type}) has no ACPI slot object in this machine, so the guest cannot be asked to release it.");
            }
            PciHotplug.RequestRemoval(slot);
        }
    }

    /// <summary>The guest ejected <paramref name="slot"/> (it wrote PCEJ from _EJ0): unplug and dispose the device.</summary>
    private void ReleaseEjected(int slot)
    {
        if (ConfiguredDevices.Any(d => d.Slot == slot))
        {
            ReleaseConfigured(slot, "after the guest's eject");
            PciDeviceReleased?.Invoke(slot);
            return;
        }
        HotpluggedDevice? gone;
        lock (_hotplugLock)
        {
            gone = _hotplugged.FirstOrDefault(d => d.Slot == slot);
            if (gone is null || !_releasing.Add(slot)) return; // a second eject while the first is being served
        }
        // BARs, ioeventfds and MSI routes go; the transport disposes the device (image, tap, threads), a passthrough
        // function its irqfds, BAR memory slots and its connection (the server sees the disconnect).
        try { Pci.RemoveDevice(slot); }
        catch (Exception e) { DeviceLogger($"PCI slot {PciAddresses.Format(slot)}: releasing {gone.Part.Name} after the guest's eject failed: {e.Message}"); }
        // Only now is it gone for describe and device.remove: "removed" means the image or tap is closed.
        lock (_hotplugLock)
        {
            Volatile.Write(ref _hotplugged, _hotplugged.Where(d => d != gone).ToArray());
            _releasing.Remove(slot);
        }
        PciDeviceReleased?.Invoke(slot);
    }

    /// <summary>
    /// Unplugs and disposes the configured device in <paramref name="slot"/> (the image or tap closed) and records the
    /// slot as removed: it stays empty (no hot-add into it) for the rest of this VMM's life, reboots included.
    /// </summary>
    private void ReleaseConfigured(int slot, string why)
    {
        ConfiguredDevice? gone;
        lock (_hotplugLock)
        {
            gone = _configured.FirstOrDefault(d => d.Slot == slot);
            if (gone is null || !_releasing.Add(slot)) return; // a second eject while the first is being served
        }
        try { Pci.RemoveDevice(slot); }
        catch (Exception e) { DeviceLogger($"PCI slot {PciAddresses.Format(slot)}: releasing the configured {gone.Device.Name} {why} failed: {e.Message}"); }
        lock (_hotplugLock)
        {
            Volatile.Write(ref _configured, _configured.Where(d => d != gone).ToArray());
            _removedConfigured |= 1u << slot;
            _releasing.Remove(slot);
        }
    }

    /// <summary>
    /// Restore: the snapshot's <c>pci-removed-configured</c> record (or its absence: none removed) must name the
    /// configured slots this machine lacks. A slot the machine was built with is unplugged here (no event: the guest
    /// had released it); a slot the machine was built without but the snapshot still had is refused.
    /// </summary>
    private void RemoveConfiguredDevicesFor(StateRecord? record)
    {
        string name = RemovedConfiguredDevicesState.Name;
        uint removed = record is null ? 0 : RemovedConfiguredDevicesState.Read(new StateReader(record.Data, record.Name), record.Version, Config);
        uint missing = RemovedConfiguredSlots & ~removed;
        if (missing != 0)
            throw new StateFormatException(name, $"the machine was built without the configured device(s) {ConfiguredDeviceSlots.Format(missing)} (removed_devices), which the snapshot still has");
        for (int slot = 1; slot < 32; slot++)
            if ((removed & ~RemovedConfiguredSlots & (1u << slot)) != 0) ReleaseConfigured(slot, "for the restore");
    }

    /// <summary>
    /// Before the first start (a reboot of the VMM's machine): plugs a device that was hot-plugged into the previous
    /// boot back into its slot, with no event, as present from power-on (still removable). Throws as <see cref="AddPciDevice"/>.
    /// </summary>
    public HotpluggedDevice PlugAtBoot(DeviceConfig config, int slot, PassedFiles? files = null)
    {
        lock (_stateLock)
        {
            if (State != VmState.Created) throw new InvalidOperationException($"a device can be plugged at boot only before the VM starts (it is {State}).");
            lock (_hotplugLock)
            {
                CheckFreeHotplugSlot(slot);
                var added = Plug(config, slot, files);
                Volatile.Write(ref _hotplugged, [.. _hotplugged, added]);
                return added;
            }
        }
    }

    /// <summary>Restore: plugs the devices a snapshot's <c>pci-hotplug-devices</c> record lists (no event: the guest has them).</summary>
    private void CreateHotpluggedDevicesFor(StateRecord record)
    {
        foreach (var (slot, config) in HotpluggedDevicesState.Read(new StateReader(record.Data, record.Name), record.Version, this))
        {
            HotpluggedDevice added;
            try { added = Plug(config, slot); }
            catch (Exception e) when (e is DeviceConfigException or Boot.BootImageException or InvalidOperationException or ArgumentException)
            {
                throw new StateFormatException(record.Name, $"the hot-plugged {config.Type} device in slot {PciAddresses.Format(slot)} cannot be re-created: {e.Message}");
            }
            lock (_hotplugLock) Volatile.Write(ref _hotplugged, [.. _hotplugged, added]);
        }
    }

    /// <summary>{"type": ..., options}: the configuration as <c>describe</c> and the snapshot record show it.</summary>
    internal static string DescribeJson(DeviceConfig config)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("type", config.Type);
            config.Describe(w);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}

/// <summary>
/// Record <c>pci-hotplug-devices</c>: the devices plugged while the VM ran, so a restore re-creates them in their
/// slots before their own records (<c>pci/00:SS.0</c>...) are applied. Version 1: count (u32), then per device its
/// slot (u8) and its configuration as JSON (string).
/// </summary>
internal sealed class HotpluggedDevicesState(VirtualMachine machine) : IPersistent
{
    public const string Name = "pci-hotplug-devices";
    public string StateName => Name;
    public ushort StateVersion => 1;

    public void SaveState(StateWriter writer)
    {
        var devices = machine.HotpluggedDevices;
        writer.WriteUInt32((uint)devices.Count);
        foreach (var d in devices)
        {
            writer.WriteByte((byte)d.Slot);
            writer.WriteString(VirtualMachine.DescribeJson(d.Config));
        }
    }

    /// <summary>The devices were re-created from this record before the parts were restored: it must list the same slots.</summary>
    public void RestoreState(StateReader reader, ushort version)
    {
        var slots = Read(reader, version, machine).Select(d => d.Slot).ToArray();
        if (!slots.SequenceEqual(machine.HotpluggedDevices.Select(d => d.Slot)))
            throw reader.Fail("the hot-plugged devices differ from the ones the machine re-created");
    }

    internal static List<(int Slot, DeviceConfig Config)> Read(StateReader reader, ushort version, VirtualMachine machine)
    {
        DeviceState.EnsureVersion(reader, version, 1);
        uint count = reader.ReadUInt32();
        if (count > 31) throw reader.Fail($"{count} hot-plugged devices (a bus has 31 slots)");
        var list = new List<(int, DeviceConfig)>();
        for (int i = 0; i < count; i++)
        {
            int slot = reader.ReadByte();
            string json = reader.ReadString(16 * 1024);
            if (!machine.PciHotplug.IsHotplugSlot(slot) || list.Any(d => d.Item1 == slot))
                throw reader.Fail($"slot {slot} is not a free hot-plug slot of this machine");
            DeviceConfig config;
            try
            {
                using var doc = JsonDocument.Parse(json);
                config = DeviceConfig.FromOptions(DeviceOptions.FromJson(doc.RootElement, $"{Name}: slot {PciAddresses.Format(slot)}"));
            }
            catch (Exception e) when (e is JsonException or DeviceConfigException)
            {
                throw reader.Fail($"the device in slot {PciAddresses.Format(slot)} has a configuration this build cannot read: {e.Message}");
            }
            // Only virtio-blk and virtio-net are in a snapshot: AddDevice refuses the other types but passthrough ones,
            // and a passthrough device refuses snapshots and migration. A record naming another type is not from this VMM.
            if (config is not (BlockDeviceConfig or NetDeviceConfig))
                throw reader.Fail($"the device in slot {PciAddresses.Format(slot)} is a {config.Type} device, which cannot be hot-plugged");
            list.Add((slot, config));
        }
        reader.EnsureEnd();
        return list;
    }
}

/// <summary>
/// Record <c>pci-removed-configured</c>: the configured devices the running VM lost (removed live), so a restore or a
/// migration's destination leaves their slots empty and the other devices in theirs. Version 1: a u32 bitmap (bit n
/// = slot n), only slots whose configured device can be removed live. A snapshot without it lost none.
/// </summary>
internal sealed class RemovedConfiguredDevicesState(VirtualMachine machine) : IPersistent
{
    public const string Name = "pci-removed-configured";
    public string StateName => Name;
    public ushort StateVersion => 1;

    public void SaveState(StateWriter writer) => writer.WriteUInt32(machine.RemovedConfiguredSlots);

    /// <summary>The devices were unplugged from this record before the parts were restored: it must name the same slots.</summary>
    public void RestoreState(StateReader reader, ushort version)
    {
        uint removed = Read(reader, version, machine.Config);
        if (removed != machine.RemovedConfiguredSlots)
            throw reader.Fail($"the removed configured devices ({ConfiguredDeviceSlots.Format(removed)}) differ from the machine's ({ConfiguredDeviceSlots.Format(machine.RemovedConfiguredSlots)})");
    }

    internal static uint Read(StateReader reader, ushort version, MachineConfig config)
    {
        DeviceState.EnsureVersion(reader, version, 1);
        uint removed = reader.ReadUInt32();
        reader.EnsureEnd();
        uint invalid = removed & ~ConfiguredDeviceSlots.Removable(config.Devices);
        if (invalid != 0)
            throw reader.Fail($"slot(s) {ConfiguredDeviceSlots.Format(invalid)} hold no configured device that can be removed live in this machine (another device configuration?)");
        return removed;
    }
}
