using KvmPS.Devices.Config;
using KvmPS.Devices.Passthrough;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Virtio.Net;
using KvmPS.Interop;
using KvmPS.Storage;
using KvmPS.Vm;

namespace KvmPS.Vmm;

/// <summary>
/// A guest reboot keeps the devices' host resources open (docs/confinement.md, "The jail"): the machine a reboot builds
/// takes the previous boot's open images, taps, CD/DVD media and vfio-user connections instead of opening the paths again. A jailed VMM could not: a tap it
/// made goes away with its last descriptor and making it again needs CAP_NET_ADMIN, and a hot-plugged image management
/// passed by descriptor may lie outside the jail or be root's alone.
/// </summary>
public sealed partial class VmmHost
{
    /// <summary>Duplicates of the open files of <paramref name="machine"/>'s disks, taps and media, by slot (hot-plugged ones too).</summary>
    private Dictionary<int, PassedFiles> KeepFilesForReboot(VirtualMachine machine)
    {
        var kept = new Dictionary<int, PassedFiles>();
        foreach (var (slot, config, device) in machine.ConfiguredDevices.Select(d => (d.Slot, d.Config, (IVirtioDevice?)d.Device))
                     .Concat(machine.HotpluggedDevices.Select(d => (d.Slot, d.Config, d.Device))))
        {
            try
            {
                if (Keep(config, device) is { } files) kept[slot] = files;
            }
            catch (Exception e) when (e is NativeCallException or NotSupportedException or ObjectDisposedException)
            {
                // Opened again by path, as before the files were kept.
                _log.WriteLine($"kvmps-vmm: the {config.Type} device {PciAddresses.Format(slot)} is opened again by path at the reboot: {e.Message}");
            }
        }
        KeepPassthroughConnections(machine, kept);
        return kept;
    }

    /// <summary>
    /// A vfio-user function, configured or hot-plugged, keeps its connection (the server may be root's alone or outside
    /// the jail, and a passed socket has no path to connect to): the next boot's function resets the device over it
    /// (VfioUserDeviceConfig.CreateFunction). A failed connection is not kept: that device connects again by path.
    /// </summary>
    private static void KeepPassthroughConnections(VirtualMachine machine, Dictionary<int, PassedFiles> kept)
    {
        foreach (var (slot, function) in machine.Pci.Devices)
        {
            if (function is PassthroughDevice { Transport: VfioUserClient { Failed: null } } passthrough && !kept.ContainsKey(slot))
                kept[slot] = new PassedFiles(passthrough.KeepTransport());
        }
    }

    /// <summary>A passthrough function (no virtio device) keeps no files here (<see cref="KeepPassthroughConnections"/>).</summary>
    private static PassedFiles? Keep(DeviceConfig config, IVirtioDevice? device)
    {
        switch (device)
        {
            // Only a chain whose top is still the configured image (what opening the path would give).
            case VirtioBlock { AwaitsBackend: false } disk when config is BlockDeviceConfig block && disk.Backend.Path == block.Path:
                return new PassedFiles(DiskImageFactory.OpenFiles(disk.Backend).Select(f => PassedDescriptors.Duplicate(f.File)));
            // Released for a migration over tcp that failed, and not locked again then (the destination still held the
            // image): the files it kept, which the reboot locks again, instead of the paths a jailed VMM may not open.
            case VirtioBlock { AwaitsBackend: true, ReleasedFiles: { Count: > 0 } released } when config is BlockDeviceConfig:
                return new PassedFiles(released.Select(f => PassedDescriptors.Duplicate(f)));
            case VirtioNet { Backend: TapDevice tap }:
            {
                var kept = new PassedFiles([PassedDescriptors.Duplicate(tap.Handle)]);
                // The next boot's device takes over the interface as it is: disposing this one must not take it out of its bridge.
                tap.OwnsHostSetup = false;
                return kept;
            }
            case Devices.Virtio.Scsi.VirtioScsi drive when config is Devices.Virtio.Scsi.CdromDeviceConfig cdrom:
                return drive.DuplicateMedium(cdrom.Medium.Path) is { } medium ? new PassedFiles([medium]) : null;
            default:
                return null;
        }
    }

    /// <summary>Closes the kept files no device of the new machine took (it failed, or the slot stayed empty).</summary>
    private static void CloseUntaken(Dictionary<int, PassedFiles>? kept)
    {
        if (kept is null) return;
        foreach (var files in kept.Values) files.Dispose();
        kept.Clear();
    }
}
