using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Storage;
using KvmPS.Vm;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Migration;

/// <summary>
/// A local live upgrade of a VM with disks (docs/migration.md, "Local live upgrade"): once the VM is paused, the source
/// passes each virtio-blk disk's open files (the image, then its backing chain) over the Unix socket; the destination,
/// which built its disks without opening them, checks each file is the one its configured path names and puts its
/// disk on them. The open file description carries the image's OFD locks, so the destination holds them from the
/// moment it has the files, and keeps them when the source exits: no moment without a lock, never two writers.
/// </summary>
internal static class DiskHandover
{
    /// <summary>The machine's configured disks, in slot order (hot-plugged ones are refused by the identity and the records).</summary>
    public static List<(int Slot, VirtioBlock Disk)> Disks(VirtualMachine machine) =>
        machine.ConfiguredDevices.Where(d => d.Device is VirtioBlock).Select(d => (d.Slot, (VirtioBlock)d.Device)).ToList();

    /// <summary>
    /// Source, paused: one DiskFds frame per disk. Over a Unix socket its open files go attached; otherwise (tcp: shared
    /// storage on another host) the disk is flushed and closed here first, its locks released, and the frame names no
    /// file: the destination opens the image by path. Released disks are added to <paramref name="released"/>, to be
    /// opened again if the migration fails.
    /// </summary>
    public static int Send(MigrationStream stream, VirtualMachine machine, List<(int Slot, VirtioBlock Disk)> released)
    {
        var disks = Disks(machine);
        foreach (var (slot, disk) in disks)
        {
            if (!stream.CanPassDescriptors)
            {
                released.Add((slot, disk));
                try { disk.ReleaseBackend(); }
                catch (Exception e) when (e is DiskImageException or IOException)
                {
                    throw new MigrationException($"the disk '{disk.Backend.Path}' at {PciAddresses.Format(slot)} could not be flushed for the hand-over: {e.Message}", e);
                }
                var head = new byte[8];
                BinaryPrimitives.WriteUInt32LittleEndian(head, (uint)slot); // file count 0: open it by path
                stream.WriteFrame(MigrationCommand.DiskFds, head);
                continue;
            }
            IReadOnlyList<(string Path, SafeFileHandle File)> files;
            try { files = DiskImageFactory.OpenFiles(disk.Backend); }
            catch (NotSupportedException e) { throw new MigrationException($"the disk at {PciAddresses.Format(slot)} cannot be handed over: {e.Message}"); }
            if (files.Count > Interop.UnixFdPassing.MaxFds)
                throw new MigrationException($"the disk '{disk.Backend.Path}' at {PciAddresses.Format(slot)} has a backing chain of {files.Count} images; a live upgrade hands over at most {Interop.UnixFdPassing.MaxFds}");
            var payload = new List<byte>(64);
            var u32 = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)slot); payload.AddRange(u32);
            BinaryPrimitives.WriteUInt32LittleEndian(u32, (uint)files.Count); payload.AddRange(u32);
            foreach (var (path, _) in files)
            {
                byte[] name = Encoding.UTF8.GetBytes(path);
                if (name.Length > ushort.MaxValue) throw new MigrationException($"the disk image path '{path}' is too long to hand over");
                payload.Add((byte)name.Length);
                payload.Add((byte)(name.Length >> 8));
                payload.AddRange(name);
            }
            stream.WriteFrameWithDescriptors(MigrationCommand.DiskFds, payload.ToArray(), files.Select(f => (SafeHandle)f.File).ToList());
        }
        return disks.Count;
    }

    /// <summary>
    /// Destination: puts the disk at the frame's slot on the files that came with it. The files are this process's from
    /// here on: on any failure they are closed (the source's own descriptors, and so its locks, are untouched).
    /// </summary>
    public static void Adopt(VirtualMachine machine, ReadOnlySpan<byte> data, List<Interop.MemfdHandle> fds)
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
            if (data.Length < 8) throw new MigrationException("the stream is corrupt: a DiskFds frame is too short");
            int slot = (int)BinaryPrimitives.ReadUInt32LittleEndian(data);
            uint count = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
            var sourcePaths = new List<string>();
            int at = 8;
            for (uint i = 0; i < count; i++)
            {
                if (at + 2 > data.Length) throw new MigrationException("the stream is corrupt: a DiskFds frame's paths run past its end");
                int length = data[at] | data[at + 1] << 8;
                if (at + 2 + length > data.Length) throw new MigrationException("the stream is corrupt: a DiskFds frame's paths run past its end");
                sourcePaths.Add(Encoding.UTF8.GetString(data.Slice(at + 2, length)));
                at += 2 + length;
            }
            if (at != data.Length) throw new MigrationException("the stream is corrupt: a DiskFds frame has bytes after its paths");
            if (files.Count != count)
                throw new MigrationException($"the DiskFds frame for {PciAddresses.Format(slot)} names {count} files but {files.Count} file descriptors came with it");
            var device = machine.ConfiguredDevices.FirstOrDefault(d => d.Slot == slot);
            if (device is not { Device: VirtioBlock disk, Config: BlockDeviceConfig config })
                throw new MigrationException($"the source handed over a disk at {PciAddresses.Format(slot)}, where this machine has {(device is null ? "no device" : "a " + device.Config.Type + " device")}");
            if (!disk.AwaitsBackend) throw new MigrationException($"the source handed over the disk at {PciAddresses.Format(slot)} twice");
            IBlockBackend backend;
            taken = true; // OpenHandedOver owns the files from here: it closes them on failure
            try
            {
                // No files: the source closed the image (shared storage over tcp); it is opened, and locked, here now.
                backend = count == 0 ? DiskImageFactory.Open(config.Path, config.Format, config.ReadOnly)
                    : DiskImageFactory.OpenHandedOver(config.Path, config.Format, config.ReadOnly, files);
            }
            catch (DiskImageException e)
            {
                throw new MigrationException(count == 0
                    ? $"the disk {PciAddresses.Format(slot)} released by the source cannot be opened here as '{config.Path}': {e.Message}"
                    : $"the disk {PciAddresses.Format(slot)} handed over by the source ('{string.Join("' on '", sourcePaths)}') cannot be used as '{config.Path}': {e.Message}", e);
            }
            try { disk.AdoptBackend(backend); }
            catch (InvalidOperationException e)
            {
                backend.Dispose();
                throw new MigrationException($"the disk {PciAddresses.Format(slot)} handed over by the source cannot be used: {e.Message}", e);
            }
        }
        finally
        {
            if (!taken) foreach (var f in files) f.Dispose();
        }
    }

    /// <summary>
    /// Source, after a failed migration and before the VM resumes: opens the released disks again by their paths (the
    /// destination closed them when it gave up; its locks may linger a moment, which the open's retries cover). A disk
    /// that cannot be opened stays without its image: its requests fail as I/O errors, and the reason is returned.
    /// </summary>
    public static string? Reacquire(VirtualMachine machine, List<(int Slot, VirtioBlock Disk)> released)
    {
        var failures = new List<string>();
        foreach (var (slot, disk) in released)
        {
            if (!disk.AwaitsBackend) continue;
            var config = (BlockDeviceConfig)machine.ConfiguredDevices.First(d => d.Slot == slot).Config;
            try
            {
                var backend = DiskImageFactory.Open(config.Path, config.Format, config.ReadOnly);
                try { disk.AdoptBackend(backend); }
                catch { backend.Dispose(); throw; }
            }
            catch (Exception e) when (e is DiskImageException or IOException or InvalidOperationException)
            {
                failures.Add($"the disk '{config.Path}' at {PciAddresses.Format(slot)} could not be opened again: {e.Message}");
            }
        }
        released.Clear();
        return failures.Count == 0 ? null : string.Join("; ", failures);
    }

    /// <summary>Destination, at End: every disk must have come (a source that sent none would leave the guest without its disk).</summary>
    public static void CheckAllAdopted(VirtualMachine machine)
    {
        foreach (var (slot, disk) in Disks(machine))
            if (disk.AwaitsBackend)
                throw new MigrationException($"the source did not hand over the disk '{disk.Backend.Path}' at {PciAddresses.Format(slot)}");
    }
}
