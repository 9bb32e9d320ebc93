using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Storage;
using KvmPS.Vm;
using Microsoft.Win32.SafeHandles;

namespace KvmPS.Migration;

/// <summary>
/// The disks' part of the device hand-over (<see cref="DeviceHandover"/>, docs/migration.md, "Local live upgrade"):
/// once the VM is paused, the source passes each virtio-blk disk's open files (the image, then its backing chain) over
/// the Unix socket; the destination, which built its disks without opening them, checks each file is the one its
/// configured path names and puts its disk on them. The open file description carries the image's OFD locks, so the destination holds them from the
/// moment it has the files, and keeps them when the source exits: no moment without a lock, never two writers.
/// </summary>
internal static class DiskHandover
{
    /// <summary>The machine's configured disks, in slot order (hot-plugged ones are refused by the identity and the records).</summary>
    public static List<(int Slot, VirtioBlock Disk)> Disks(VirtualMachine machine) =>
        machine.ConfiguredDevices.Where(d => d.Device is VirtioBlock).Select(d => (d.Slot, (VirtioBlock)d.Device)).ToList();

    /// <summary>
    /// Source, paused: the disk's DeviceFds frame (<see cref="DeviceHandover"/>). Over a Unix socket its open files go
    /// attached; otherwise (tcp: shared storage on another host) the disk is flushed and its image closed here first,
    /// its locks released (the files stay open, <see cref="VirtioBlock.ReleaseBackend"/>), and the frame names no file:
    /// the destination opens the image by path. A released disk is added to <paramref name="released"/>, to be locked
    /// and used again if the migration fails.
    /// </summary>
    public static void Send(MigrationStream stream, int slot, VirtioBlock disk, List<(int Slot, VirtioBlock Disk)> released)
    {
        if (!stream.CanPassDescriptors)
        {
            released.Add((slot, disk));
            try { disk.ReleaseBackend(); }
            catch (Exception e) when (e is DiskImageException or IOException)
            {
                throw new MigrationException($"the disk '{disk.Backend.Path}' at {PciAddresses.Format(slot)} could not be flushed for the hand-over: {e.Message}", e);
            }
            DeviceHandover.WriteFrame(stream, slot, []); // no file: open it by path
            return;
        }
        IReadOnlyList<(string Path, SafeFileHandle File)> files;
        try { files = DiskImageFactory.OpenFiles(disk.Backend); }
        catch (NotSupportedException e) { throw new MigrationException($"the disk at {PciAddresses.Format(slot)} cannot be handed over: {e.Message}"); }
        if (files.Count > Interop.UnixFdPassing.MaxFds)
            throw new MigrationException($"the disk '{disk.Backend.Path}' at {PciAddresses.Format(slot)} has a backing chain of {files.Count} images; a live upgrade hands over at most {Interop.UnixFdPassing.MaxFds}");
        DeviceHandover.WriteFrame(stream, slot, files.Select(f => (f.Path, (SafeHandle)f.File)).ToList());
    }

    /// <summary>
    /// Destination: puts <paramref name="disk"/> on the files that came with its frame (the image, then its backing
    /// chain; none: the source closed it, open it by path). The files are this method's: closed on failure.
    /// </summary>
    public static void Adopt(int slot, VirtioBlock disk, BlockDeviceConfig config, IReadOnlyList<string> sourcePaths, List<SafeFileHandle> files)
    {
        if (!disk.AwaitsBackend)
        {
            foreach (var f in files) f.Dispose();
            throw new MigrationException($"the source handed over the disk at {PciAddresses.Format(slot)} twice");
        }
        IBlockBackend backend;
        try
        {
            // No files: the source closed the image (shared storage over tcp); it is opened, and locked, here now.
            backend = files.Count == 0 ? DiskImageFactory.Open(config.Path, config.Format, config.ReadOnly)
                : DiskImageFactory.OpenHandedOver(config.Path, config.Format, config.ReadOnly, files);
        }
        catch (DiskImageException e)
        {
            throw new MigrationException(files.Count == 0
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

    /// <summary>
    /// Source, after a failed migration and before the VM resumes: locks the released disks' images again and puts
    /// each disk back on them, on the files it kept open (never by path: a jailed VMM's user may not open root's images,
    /// or see the path at all). The images are read afresh (a new image object: nothing cached from before the
    /// release), and the destination gave them up when it refused; its locks may linger a moment, which the locking's
    /// retries cover. A disk whose image cannot be locked or read stays without it (its requests fail as I/O errors)
    /// and keeps its files for a guest reboot to try again; the reason is returned.
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
                var backend = disk.ReleasedFiles is { Count: > 0 } kept
                    ? DiskImageFactory.OpenPassed(config.Path, config.Format, config.ReadOnly, Duplicates(kept))
                    : DiskImageFactory.Open(config.Path, config.Format, config.ReadOnly);
                try { disk.AdoptBackend(backend); }
                catch { backend.Dispose(); throw; }
            }
            catch (Exception e) when (e is DiskImageException or IOException or InvalidOperationException)
            {
                // The images locked before the one that failed (the top, when a backing file was refused) hold their
                // locks on the kept descriptions: dropped, so others may open the images while this disk has none.
                foreach (var file in disk.ReleasedFiles ?? [])
                {
                    try { DiskImageFactory.ReleaseLocks(config.Path, file); }
                    catch (DiskImageException) { } // the failure reported below is the one that matters
                }
                failures.Add($"the disk '{config.Path}' at {PciAddresses.Format(slot)} could not be opened again: {e.Message}");
            }
        }
        released.Clear();
        return failures.Count == 0 ? null : string.Join("; ", failures);
    }

    /// <summary>Source, once the destination runs the VM: the released disks' kept files are closed for good.</summary>
    public static void CloseReleased(List<(int Slot, VirtioBlock Disk)> released)
    {
        foreach (var (_, disk) in released) disk.CloseReleasedFiles();
        released.Clear();
    }

    /// <summary>Second descriptors of <paramref name="files"/> (the disk keeps its own until the image is adopted).</summary>
    private static List<SafeFileHandle> Duplicates(IReadOnlyList<SafeFileHandle> files)
    {
        var copies = new List<SafeFileHandle>();
        try
        {
            foreach (var f in files) copies.Add(Interop.PassedDescriptors.Duplicate(f));
            return copies;
        }
        catch
        {
            foreach (var c in copies) c.Dispose();
            throw;
        }
    }
}
