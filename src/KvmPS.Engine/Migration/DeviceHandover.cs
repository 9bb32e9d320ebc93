using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Virtio.Net;
using KvmPS.Devices.Virtio.Vsock;
using KvmPS.Vm;
using KvmPS.Vmm;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Migration;

/// <summary>How many devices changed hands at the pause, by kind (for the log lines and the tests).</summary>
public readonly record struct HandedOverDevices(int Disks, int Taps, int VsockListeners)
{
    public bool Any => Disks + Taps + VsockListeners > 0;

    /// <summary>", 2 disks handed over (not copied), 1 taps handed over, 1 vsock sockets handed over" (tcp: disks released / opened).</summary>
    public string Describe(bool passed, string diskVerb) =>
        (Disks > 0 ? passed ? $", {Disks} disks handed over (not copied)" : $", {Disks} disks {diskVerb}" : "") +
        (Taps > 0 ? $", {Taps} taps handed over" : "") +
        (VsockListeners > 0 ? $", {VsockListeners} vsock sockets handed over" : "");
}

/// <summary>
/// The device hand-over of a live upgrade (docs/migration.md, "Local live upgrade"): once the VM is paused, the source
/// sends one <see cref="MigrationCommand.DeviceFds"/> frame per device that holds a host resource — a disk's open image
/// files, a tap, a vsock listening socket — with the open descriptors attached (SCM_RIGHTS); the destination, which
/// built those devices without opening anything, puts each device on what came. One frame and one codec for every
/// kind; what a descriptor must be, and how a device takes it, is the device's (<see cref="DiskHandover"/>,
/// <see cref="TapDevice.Adopt"/>, <see cref="VsockHost.AdoptListener"/>). Both processes hold the same open files
/// until the source exits, so there is no instant without the tap, the listener or the image locks.
/// </summary>
internal static class DeviceHandover
{
    /// <summary>What a destination builds without, for a stream of this format version.</summary>
    public static HandedOverResources For(uint version) => version switch
    {
        MigrationStream.DiskHandoverFormatVersion => HandedOverResources.DiskImages,
        MigrationStream.DeviceHandoverFormatVersion => HandedOverResources.DiskImages | HandedOverResources.Taps | HandedOverResources.VsockListeners,
        _ => HandedOverResources.None,
    };

    /// <summary>
    /// The source's choice: the format version to write and what it hands over. Taps and vsock listeners go only over a
    /// Unix socket (version 4; between hosts the destination opens its own, as before), disks also over tcp (version 3:
    /// released and opened by path). A VM with neither goes as version 1, so an older destination still takes it.
    /// </summary>
    public static (uint Version, HandedOverResources What) Plan(VirtualMachine machine, bool includeStorage, bool canPassDescriptors)
    {
        if (includeStorage) return (MigrationStream.StorageFormatVersion, HandedOverResources.None);
        bool disks = DiskHandover.Disks(machine).Count > 0;
        bool others = canPassDescriptors && machine.ConfiguredDevices.Any(d => d.Device is VirtioNet or VirtioVsock);
        if (others) return (MigrationStream.DeviceHandoverFormatVersion, For(MigrationStream.DeviceHandoverFormatVersion));
        if (disks) return (MigrationStream.DiskHandoverFormatVersion, HandedOverResources.DiskImages);
        return (MigrationStream.FormatVersion, HandedOverResources.None);
    }

    /// <summary>Source, paused: one DeviceFds frame per device of the kinds in <paramref name="what"/>, in slot order.</summary>
    public static HandedOverDevices Send(MigrationStream stream, VirtualMachine machine, HandedOverResources what, List<(int Slot, VirtioBlock Disk)> released)
    {
        int disks = 0, taps = 0, vsocks = 0;
        foreach (var configured in machine.ConfiguredDevices)
        {
            switch (configured.Device)
            {
                case VirtioBlock disk when what.HasFlag(HandedOverResources.DiskImages):
                    DiskHandover.Send(stream, configured.Slot, disk, released);
                    disks++;
                    break;
                case VirtioNet { Backend: TapDevice tap } when what.HasFlag(HandedOverResources.Taps):
                    WriteFrame(stream, configured.Slot, [(tap.Name, tap.Handle)]);
                    taps++;
                    break;
                case VirtioVsock vsock when what.HasFlag(HandedOverResources.VsockListeners):
                    WriteFrame(stream, configured.Slot, [(vsock.Host.Path, vsock.Host.ListenerHandle)]);
                    vsocks++;
                    break;
                case VirtioNet net when what.HasFlag(HandedOverResources.Taps):
                    throw new MigrationException($"the network device at {PciAddresses.Format(configured.Slot)} is not on a tap ('{net.Backend.Name}') and cannot be handed over");
            }
        }
        return new HandedOverDevices(disks, taps, vsocks);
    }

    /// <summary>
    /// Writes one DeviceFds frame: u32 PCI slot, u32 count, per descriptor u16 length and the UTF-8 name it goes by (a
    /// path, an interface name); the descriptors travel with the frame's first byte. No descriptors: a count of 0 (a
    /// disk released over tcp).
    /// </summary>
    public static void WriteFrame(MigrationStream stream, int slot, IReadOnlyList<(string Name, SafeHandle Handle)> files)
    {
        if (files.Count > Interop.UnixFdPassing.MaxFds)
            throw new MigrationException($"the device at {PciAddresses.Format(slot)} has {files.Count} files to hand over; a live upgrade hands over at most {Interop.UnixFdPassing.MaxFds} per device");
        var payload = new List<byte>(64);
        var u32 = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)slot); payload.AddRange(u32);
        BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)files.Count); payload.AddRange(u32);
        foreach (var (name, _) in files)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(name);
            if (bytes.Length > ushort.MaxValue) throw new MigrationException($"the name '{name}' is too long to hand over");
            payload.Add((byte)bytes.Length);
            payload.Add((byte)(bytes.Length >> 8));
            payload.AddRange(bytes);
        }
        if (files.Count == 0) stream.WriteFrame(MigrationCommand.DeviceFds, payload.ToArray());
        else stream.WriteFrameWithDescriptors(MigrationCommand.DeviceFds, payload.ToArray(), files.Select(f => f.Handle).ToList());
    }

    /// <summary>
    /// Destination: puts the device at the frame's slot on the descriptors that came with it. They are this process's
    /// from here on: on any failure they are closed (the source's own, and so its tap, listener and locks, are untouched).
    /// </summary>
    public static void Adopt(VirtualMachine machine, HandedOverResources deferred, ReadOnlySpan<byte> data, List<Interop.MemfdHandle> fds, ref HandedOverDevices counts)
    {
        // SCM_RIGHTS descriptors arrive as MemfdHandles (the reader does not know what they are): re-own them as files.
        var files = new List<SafeFileHandle>(fds.Count);
        foreach (var fd in fds)
        {
            files.Add(new SafeFileHandle(fd.DangerousGetHandle(), ownsHandle: true));
            fd.SetHandleAsInvalid();
        }
        fds.Clear();
        bool taken = false;
        try
        {
            if (data.Length < 8) throw new MigrationException("the stream is corrupt: a DeviceFds frame is too short");
            int slot = (int)BinaryPrimitives.ReadUInt32LittleEndian(data);
            uint count = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
            var names = new List<string>();
            int at = 8;
            for (uint i = 0; i < count; i++)
            {
                if (at + 2 > data.Length) throw new MigrationException("the stream is corrupt: a DeviceFds frame's names run past its end");
                int length = data[at] | data[at + 1] << 8;
                if (at + 2 + length > data.Length) throw new MigrationException("the stream is corrupt: a DeviceFds frame's names run past its end");
                names.Add(Encoding.UTF8.GetString(data.Slice(at + 2, length)));
                at += 2 + length;
            }
            if (at != data.Length) throw new MigrationException("the stream is corrupt: a DeviceFds frame has bytes after its names");
            if (files.Count != count)
                throw new MigrationException($"the DeviceFds frame for {PciAddresses.Format(slot)} names {count} files but {files.Count} file descriptors came with it");
            var device = machine.ConfiguredDevices.FirstOrDefault(d => d.Slot == slot);
            string where = PciAddresses.Format(slot);
            switch (device)
            {
                case { Device: VirtioBlock disk, Config: BlockDeviceConfig config } when deferred.HasFlag(HandedOverResources.DiskImages):
                    taken = true; // DiskHandover owns the files from here: it closes them on failure
                    DiskHandover.Adopt(slot, disk, config, names, files);
                    counts = counts with { Disks = counts.Disks + 1 };
                    break;
                case { Device: VirtioNet net, Config: NetDeviceConfig config } when deferred.HasFlag(HandedOverResources.Taps):
                {
                    if (count != 1) throw new MigrationException($"the source handed over the tap at {where} as {count} descriptors (one expected)");
                    if (!net.AwaitsBackend) throw new MigrationException($"the source handed over the tap at {where} twice");
                    taken = true;
                    // Frames that arrive before the VM runs wait in the tap (VirtualMachine.Start resumes every part).
                    net.Pause();
                    TapDevice tap;
                    try { tap = TapDevice.Adopt(files[0], config.Tap, config.Bridge); }
                    catch (TapSetupException e) { throw new MigrationException($"the tap handed over by the source for {where} ('{names[0]}') cannot be used: {e.Message}", e); }
                    try { net.AdoptBackend(tap); }
                    catch (InvalidOperationException e)
                    {
                        tap.Dispose();
                        throw new MigrationException($"the tap handed over by the source for {where} cannot be used: {e.Message}", e);
                    }
                    counts = counts with { Taps = counts.Taps + 1 };
                    break;
                }
                case { Device: VirtioVsock vsock } when deferred.HasFlag(HandedOverResources.VsockListeners):
                {
                    if (count != 1) throw new MigrationException($"the source handed over the vsock socket at {where} as {count} descriptors (one expected)");
                    if (!vsock.Host.AwaitsListener) throw new MigrationException($"the source handed over the vsock socket at {where} twice");
                    taken = true;
                    // Clients in the backlog are accepted once the VM runs (VirtualMachine.Start resumes every part), not
                    // before its state (and the transport reset the guest is owed) is restored.
                    vsock.Pause();
                    var socket = new SafeSocketHandle(files[0].DangerousGetHandle(), ownsHandle: true);
                    files[0].SetHandleAsInvalid();
                    try { vsock.Host.AdoptListener(socket); }
                    catch (VmmResourceException e) { throw new MigrationException($"the vsock socket handed over by the source for {where} ('{names[0]}') cannot be used: {e.Message}", e); }
                    counts = counts with { VsockListeners = counts.VsockListeners + 1 };
                    break;
                }
                default:
                    throw new MigrationException($"the source handed over {(count == 0 ? "a device" : $"'{string.Join("', '", names)}'")} at {where}, where this machine has {(device is null ? "no device" : $"a {device.Config.Type} device")} that waits for none");
            }
        }
        finally
        {
            if (!taken) foreach (var f in files) f.Dispose();
        }
    }

    /// <summary>Destination, at End: every device built without its host resource must have got it.</summary>
    public static void CheckAllAdopted(VirtualMachine machine)
    {
        foreach (var d in machine.ConfiguredDevices)
        {
            string? missing = d.Device switch
            {
                VirtioBlock { AwaitsBackend: true } disk => $"the disk '{disk.Backend.Path}'",
                VirtioNet { AwaitsBackend: true } net => $"the tap '{net.Backend.Name}'",
                VirtioVsock vsock when vsock.Host.AwaitsListener => $"the vsock socket '{vsock.Host.Path}'",
                _ => null,
            };
            if (missing is not null) throw new MigrationException($"the source did not hand over {missing} at {PciAddresses.Format(d.Slot)}");
        }
    }

    /// <summary>
    /// Who undoes the shared host set-up when its device goes (a pre-existing tap's bridge port, the vsock socket file):
    /// the source gives it up once the destination runs the VM, the destination takes it once it has told the source.
    /// Only what was handed over: a tap or socket path a migration to another host leaves behind is still this VMM's.
    /// </summary>
    public static void SetOwnership(VirtualMachine machine, HandedOverResources handedOver, bool owns)
    {
        foreach (var d in machine.ConfiguredDevices)
        {
            if (d.Device is VirtioNet { Backend: TapDevice tap } && handedOver.HasFlag(HandedOverResources.Taps)) tap.OwnsHostSetup = owns;
            else if (d.Device is VirtioVsock vsock && handedOver.HasFlag(HandedOverResources.VsockListeners)) vsock.Host.OwnsHostSetup = owns;
        }
    }
}
