using System.Diagnostics;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.Vm;
using KvmPS.Vm.Boot;

namespace KvmPS.Vmm;

/// <summary>The VMM host's device-level control requests (hot-plug, vCPUs, media, device requests) and its VNC server.</summary>
public sealed partial class VmmHost
{
    public bool TryHandleDeviceRequest(ControlRequest request, out JsonElement result) => TryHandleDeviceRequest(request, PassedFiles.None, out result);

    /// <summary>
    /// A device request with the open files that came with it: only media.change takes one (the ISO, docs/vmm.md
    /// "Passing open files"); the drive takes what it uses, the caller closes the rest.
    /// </summary>
    public bool TryHandleDeviceRequest(ControlRequest request, PassedFiles files, out JsonElement result)
    {
        VirtualMachine? machine;
        lock (_lock) machine = _machine;
        result = default;
        if (request is MediaChangeRequest media)
        {
            // A drive is named by its PCI address: a VM may have several.
            if (machine is null || !machine.Devices.OfType<Devices.Virtio.Scsi.VirtioScsi>().Any()) return false;
            RefuseDuringMigration(MediaChangeRequest.Name); // the drive's record may already have been sent
            result = JsonSerializer.SerializeToElement(ChangeMedia(machine, media, files), ContractJsonContext.Default.MediaStateReply);
            return true;
        }
        var device = machine?.ControlDevices.FirstOrDefault(d => d.ControlRequests.Contains(request.Request));
        if (device is null) return false;
        if (files.Count > 0) throw new ArgumentException($"'{request.Request}' takes no passed files, but {files.Count} came with it (they were closed).");
        if (request.Request == MemorySetRequest.Name) RefuseDuringMigration(MemorySetRequest.Name); // the RAM layout travels in the records
        result = device.HandleControlRequest(request);
        return true;
    }

    /// <summary>media.change: the cdrom device at the request's PCI address inserts or ejects (Devices/Virtio/Scsi/VirtioScsi.ChangeMedia).</summary>
    private static MediaStateReply ChangeMedia(VirtualMachine machine, MediaChangeRequest request, PassedFiles files)
    {
        int slot = PciAddresses.Parse(request.Pci, "pci");
        var device = machine.ConfiguredDevices.Where(d => d.Slot == slot).Select(d => d.Device)
            .Concat(machine.HotpluggedDevices.Where(d => d.Slot == slot).Select(d => d.Device).OfType<Devices.Virtio.IVirtioDevice>()).FirstOrDefault();
        if (device is not Devices.Virtio.Scsi.VirtioScsi drive)
            throw new ArgumentException($"{MediaChangeRequest.Name}: \"pci\": {PciAddresses.Format(slot)} is {(device is null ? "an empty slot" : $"a {device.Name} device")}, not a cdrom device.");
        return drive.ChangeMedia(request, PciAddresses.Format(slot), files);
    }

    /// <summary>vcpu.set: ACPI CPU hot-plug on the running (or paused) machine, within max_vcpus (Vm/VirtualMachine.SetVcpuCount).</summary>
    public VcpuSetReply SetVcpus(VcpuSetRequest request)
    {
        VirtualMachine? machine;
        lock (_lock) machine = _machine;
        machine ??= RequireMachine();
        RefuseDuringMigration(VcpuSetRequest.Name);
        if (request.TimeoutMs is < 0 or > 600_000) throw new ArgumentOutOfRangeException(nameof(request.TimeoutMs), $"timeout_ms {request.TimeoutMs} is outside 0-600000.");
        machine.SetVcpuCount(request.Count);
        var deadline = Stopwatch.StartNew();
        var pending = machine.PendingVcpuChanges;
        while ((pending.Inserting.Count > 0 || pending.Removing.Count > 0) && deadline.ElapsedMilliseconds < (request.TimeoutMs ?? 0))
        {
            Thread.Sleep(10);
            pending = machine.PendingVcpuChanges;
        }
        return new VcpuSetReply(machine.PresentVcpuCount, machine.Config.EffectiveMaxVcpus)
        {
            Inserting = pending.Inserting,
            Removing = pending.Removing,
            TimedOut = request.TimeoutMs > 0 && (pending.Inserting.Count > 0 || pending.Removing.Count > 0),
        };
    }

    /// <summary>
    /// device.add: ACPI PCI hot-plug of a virtio-blk, virtio-net or passthrough (vfio-user, vfio) device
    /// (Vm/VirtualMachine.Hotplug.cs). Bad input is InvalidArgument naming it (the spec's type or path, the slot, a
    /// vfio-user server that is not there or fails during the set-up), nothing changes; with timeout_ms the reply waits
    /// for the guest's driver: DRIVER_OK, or for a passthrough function memory decoding and bus mastering on.
    /// </summary>
    public DeviceAddReply AddDevice(DeviceAddRequest request) => AddDevice(request, PassedFiles.None);

    /// <summary>
    /// device.add with the open files that came with it (docs/vmm.md, "Passing open files"): a block or net device uses
    /// them instead of opening its path, a vfio-user device its connected socket instead of connecting to its path. The
    /// device takes what it uses; the caller closes the rest.
    /// </summary>
    public DeviceAddReply AddDevice(DeviceAddRequest request, PassedFiles files)
    {
        var machine = RequireMachine();
        RefuseDuringMigration(DeviceAddRequest.Name);
        int timeoutMs = CheckTimeout(request.TimeoutMs);
        int? slot = request.Pci is { } pci ? PciAddresses.Parse(pci, "pci") : null;
        DeviceConfig config;
        try
        {
            var spec = JsonSerializer.SerializeToElement(request.Device, ContractJsonContext.Default.DeviceSpec);
            config = DeviceConfig.FromOptions(DeviceOptions.FromJson(spec, $"{DeviceAddRequest.Name}: device"));
        }
        catch (DeviceConfigException e) { throw new ArgumentException(e.Message); }
        if (files.Count > 0 && config is not (Devices.Virtio.Block.BlockDeviceConfig or Devices.Virtio.Net.NetDeviceConfig or Devices.Passthrough.VfioUserDeviceConfig))
            throw new ArgumentException($"{DeviceAddRequest.Name}: a {config.Type} device takes no passed files, but {files.Count} came with the request (they were closed).");
        HotpluggedDevice added;
        try { added = machine.AddPciDevice(config, slot, files.Count > 0 ? files : null); }
        catch (Exception e) when (e is DeviceConfigException or BootImageException or Devices.Passthrough.PassthroughException)
        {
            throw new ArgumentException($"{DeviceAddRequest.Name}: {e.Message}");
        }
        var clock = Stopwatch.StartNew();
        bool ready = DriverReady(added);
        while (!ready && clock.ElapsedMilliseconds < timeoutMs && !machine.Exited.IsCompleted)
        {
            Thread.Sleep(10);
            ready = DriverReady(added);
        }
        return new DeviceAddReply { Device = DescribeDevice(added.Config, added.Slot, hotplugged: true, removable: true), DriverReady = ready, TimedOut = timeoutMs > 0 && !ready };
    }

    private static bool DriverReady(HotpluggedDevice d) => d.Part.DriverReady;

    /// <summary>
    /// device.remove: an eject request for a hot-plugged device or a configured one that can leave a running VM
    /// (Vm/ConfiguredDeviceSlots); it is torn down only when the guest ejects it. With timeout_ms the reply waits for
    /// that; a guest that does not eject leaves it present and working (removing, timed_out).
    /// </summary>
    public DeviceRemoveReply RemoveDevice(DeviceRemoveRequest request)
    {
        var machine = RequireMachine();
        RefuseDuringMigration(DeviceRemoveRequest.Name);
        int timeoutMs = CheckTimeout(request.TimeoutMs);
        int slot = PciAddresses.Parse(request.Pci, "pci");
        machine.RequestPciDeviceRemoval(slot);
        var clock = Stopwatch.StartNew();
        bool Present() => machine.IsPciSlotOccupied(slot);
        bool present = Present();
        while (present && clock.ElapsedMilliseconds < timeoutMs && !machine.Exited.IsCompleted)
        {
            Thread.Sleep(10);
            present = Present();
        }
        return new DeviceRemoveReply
        {
            Pci = PciAddresses.Format(slot),
            State = present ? DeviceRemoveReply.Removing : DeviceRemoveReply.Removed,
            TimedOut = timeoutMs > 0 && present,
        };
    }

    private static int CheckTimeout(int? timeoutMs) => timeoutMs is < 0 or > 600_000
        ? throw new ArgumentException($"timeout_ms {timeoutMs} is outside 0-600000.")
        : timeoutMs ?? 0;

    /// <summary>The VNC server, once, for the machine of the moment; an unusable listener fails the start.</summary>
    private int? StartVnc()
    {
        if (_vnc is not null || _config.Vnc is not { } settings) return null;
        lock (_lock)
            if (_machine?.Framebuffer is null) return Fail(VmmExitCode.UsageError, "vnc: the machine has no display device for the VNC server to show (add --device display).");
        try { _vnc = Vnc.VncServer.Start(settings, new VncTarget(this), "kvmps", message => _log.WriteLine($"kvmps-vmm: {message}")); }
        catch (VmmResourceException e)
        {
            lock (_lock) _machine?.Stop("the VNC server cannot start");
            return Fail(VmmExitCode.HostResource, e.Message);
        }
        return null;
    }

    /// <summary>The VNC server, for display.get: listeners, password, viewers; null without one.</summary>
    public Vnc.VncServer? VncServer => _vnc;

    private Devices.Display.DisplayVncStatus? VncStatusForDisplay() =>
        _vnc is { } vnc ? new(vnc.UnixPath, vnc.TcpEndPoint?.ToString(), vnc.PasswordRequired, vnc.ViewerCount) : null;

    /// <summary>What viewers see and type into: the machine of the moment (a guest reboot builds a new one).</summary>
    private sealed class VncTarget(VmmHost host) : Vnc.IVncTarget
    {
        public Devices.Display.IFramebuffer? Framebuffer { get { lock (host._lock) return host._machine?.Framebuffer; } }
        public Vnc.IVncInput? Input { get { lock (host._lock) return host._machine?.Keyboard; } }
    }
}
