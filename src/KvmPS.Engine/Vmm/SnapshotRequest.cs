using System.Diagnostics;
using KvmPS.Contract;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio.Block;
using KvmPS.State;
using KvmPS.Storage;
using KvmPS.Vm;

namespace KvmPS.Vmm;

/// <summary>
/// Control request <c>snapshot.create</c> (docs/vmm.md, docs/snapshots.md): pauses every vCPU and every pausable
/// device, writes DIR (state.bin, config.json, memory.bin; a diff also parent and pages.bin), and resumes unless
/// <c>resume</c> is false. A diff holds the pages dirtied since the previous snapshot of this process, or since the
/// snapshot it was restored from.
/// </summary>
public static class SnapshotRequest
{
    private static readonly TimeSpan PauseTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Takes the snapshot <paramref name="request"/> asks for; <paramref name="configJson"/> becomes its config.json.</summary>
    /// <param name="console">
    /// Flushed while the vCPUs are stopped, so the console's sink holds every byte the guest wrote before the snapshot
    /// when the reply goes out (a restored guest's output then follows it, not bytes still in the writer's buffer).
    /// </param>
    public static SnapshotCreateReply Create(VirtualMachine machine, SnapshotCreateRequest request, string configJson, ConsoleHub? console = null)
    {
        if (string.IsNullOrEmpty(request.Path)) throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, "\"path\" must name the snapshot directory to create");
        bool diff = request.Memory == SnapshotMemory.Diff;
        if (diff && machine.SnapshotBaseline is null)
            throw new ControlProtocolException(ControlErrorCodes.InvalidState,
                "a diff snapshot needs a parent: this VMM process has not taken a snapshot and was not restored from one; take a \"memory\": \"full\" snapshot first");
        string snapshotId = request.SnapshotId ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(request.Path)));
        var clock = Stopwatch.StartNew();
        var state = machine.State;
        if (state is not (VmState.Running or VmState.Paused))
            throw new ControlProtocolException(ControlErrorCodes.InvalidState, $"a snapshot needs a Running or Paused VM (it is {state})");
        machine.ThrowIfNotMigratable(); // a passthrough device: refused before the VM pauses (InvalidState)
        string target;
        try { target = SnapshotDirectory.CheckTarget(request.Path); }
        catch (SnapshotException e) { throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, e.Message); }
        var disks = DisksToSnapshot(machine.Config, request.Disks == SnapshotDisks.Snapshot);

        bool wasRunning = state == VmState.Running;
        if (!machine.Pause(PauseTimeout)) throw new ControlProtocolException(ControlErrorCodes.Timeout, $"the vCPUs did not stop within {PauseTimeout.TotalSeconds:0} s");
        var paused = Stopwatch.StartNew();
        SnapshotWriteResult result;
        var diskSnapshots = new List<(ISnapshotableBlockBackend Image, SnapshotDisk Record)>();
        var baseline = machine.SnapshotBaseline;
        try
        {
            // The pages dirtied since the baseline snapshot join the ones a failed diff left; the first snapshot of
            // this process starts the tracking, so "since" counts from this paused instant.
            if (machine.Memory.DirtyTracking) baseline?.PendingPages.UnionWith(machine.Memory.HarvestDirtyPages());
            else machine.Memory.StartDirtyTracking();
            var records = machine.SaveState();
            console?.Flush(ConsoleHub.PausedFlushTimeout);
            TakeDiskSnapshots(machine, disks, snapshotId, VmClockNs(records), diskSnapshots);
            byte[] stateBytes = SnapshotStateFile.Encode(records);
            var diffPages = diff ? new SnapshotDiff(baseline!.Directory, baseline.StateCrc, baseline.PendingPages) : null;
            result = SnapshotDirectory.Write(target, stateBytes, configJson, machine.Memory, diskSnapshots.Select(d => d.Record).ToList(), diffPages);
            // Written: the next diff is taken on this snapshot, and what was pending is in it (or in the full one).
            machine.SnapshotBaseline = new SnapshotBaseline(result.Path, result.StateCrc, machine.Memory.PageCount);
        }
        catch (Exception e)
        {
            // Nothing was written (SnapshotDirectory cleans up), the disk snapshots taken are deleted; the VM goes on as it was.
            DeleteDiskSnapshots(diskSnapshots);
            if (wasRunning) machine.Resume();
            if (e is SnapshotException s) throw new ControlProtocolException(ControlErrorCodes.InternalError, s.Message);
            throw;
        }
        if (wasRunning && request.Resume) machine.Resume();
        return new SnapshotCreateReply
        {
            Path = result.Path,
            Memory = diff ? SnapshotMemory.Diff : SnapshotMemory.Full,
            MemoryBytes = (long)result.MemoryDataBytes,
            StateBytes = result.StateBytes,
            DurationMs = (long)clock.Elapsed.TotalMilliseconds,
            PausedMs = (long)paused.Elapsed.TotalMilliseconds,
            DiskSnapshots = diskSnapshots.Select(d => new DiskSnapshotReply(d.Record.Path, d.Record.SnapshotId)).ToList(),
            VmState = machine.State.ToString(),
        };
    }

    /// <summary>
    /// The writable disks that need a snapshot of their own. A raw disk cannot have one, so with <c>disks:"snapshot"</c>
    /// it makes the request fail before anything is paused; <c>disks:"ignore"</c> accepts disks that move on.
    /// </summary>
    private static List<BlockDeviceConfig> DisksToSnapshot(MachineConfig config, bool snapshotDisks)
    {
        var disks = config.Devices.OfType<BlockDeviceConfig>().Where(d => !d.ReadOnly).ToList();
        if (!snapshotDisks) return [];
        foreach (var d in disks)
            if (!IsQcow2(d))
                throw new ControlProtocolException(ControlErrorCodes.InvalidState,
                    $"disk {d.Path} is a raw image, which cannot take a snapshot; pass \"disks\": \"ignore\" to snapshot without it (the disk will move on)");
        return disks;
    }

    private static bool IsQcow2(BlockDeviceConfig disk)
    {
        if (disk.Format != DiskImageFormat.Auto) return disk.Format == DiskImageFormat.Qcow2;
        Span<byte> magic = stackalloc byte[4];
        try
        {
            using var f = File.OpenHandle(disk.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return RandomAccess.Read(f, magic, 0) == 4 && magic.SequenceEqual((ReadOnlySpan<byte>)[0x51, 0x46, 0x49, 0xfb]); // "QFI\xfb"
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>
    /// At the paused instant (Pause has drained every in-flight block request): every writable disk in
    /// <paramref name="disks"/> gets an internal qcow2 snapshot <paramref name="snapshotId"/> on the image its block
    /// device has open. All disks are checked for the ID first, so a duplicate creates nothing; a failed create
    /// leaves the ones already made in <paramref name="taken"/> for the caller to delete.
    /// </summary>
    private static void TakeDiskSnapshots(VirtualMachine machine, List<BlockDeviceConfig> disks, string snapshotId, ulong vmClockNs,
        List<(ISnapshotableBlockBackend Image, SnapshotDisk Record)> taken)
    {
        if (disks.Count == 0) return;
        var images = new List<ISnapshotableBlockBackend>();
        foreach (var block in machine.Devices.OfType<VirtioBlock>().Where(b => !b.ReadOnly))
        {
            ISnapshotableBlockBackend image;
            try { image = block.SnapshotableBackend(); }
            catch (DiskSnapshotsNotSupportedException e) { throw new ControlProtocolException(ControlErrorCodes.InvalidState, $"disk {block.Backend.Path}: {e.Message}"); }
            if (image.FindSnapshot(snapshotId) is { } existing)
                throw new ControlProtocolException(ControlErrorCodes.InvalidArgument,
                    $"disk {image.Path} already has an internal snapshot with ID or name '{snapshotId}' (ID '{existing.Id}', name '{existing.Name}'); choose another \"snapshot_id\"");
            images.Add(image);
        }
        foreach (var image in images)
        {
            string path = Path.GetFullPath(image.Path);
            try
            {
                image.CreateSnapshot(snapshotId, snapshotId, vmClockNs);
                // Recorded as the image stores it (its time has the table's resolution), so a restore can compare.
                var info = image.FindSnapshot(snapshotId) ?? throw new IOException("the snapshot is not in the image's table after it was created");
                taken.Add((image, SnapshotDisk.From(path, info)));
            }
            catch (Exception e) when (e is DiskImageException or IOException or UnauthorizedAccessException)
            {
                throw new ControlProtocolException(ControlErrorCodes.InternalError, $"disk {path}: taking internal snapshot '{snapshotId}' failed: {e.Message}");
            }
        }
    }

    /// <summary>Undoes <see cref="TakeDiskSnapshots"/> after a failure; a delete that fails too is logged by its error only.</summary>
    private static void DeleteDiskSnapshots(List<(ISnapshotableBlockBackend Image, SnapshotDisk Record)> taken)
    {
        foreach (var (image, record) in taken)
        {
            try { image.DeleteSnapshot(record.SnapshotId); }
            catch (Exception e) when (e is DiskImageException or IOException)
            {
                Console.Error.WriteLine($"kvmps-vmm: disk {record.Path}: removing internal snapshot '{record.SnapshotId}' after a failed snapshot failed: {e.Message}");
            }
        }
        taken.Clear();
    }

    /// <summary>The guest's kvmclock at the paused instant (the last field of the <c>kvm/vm</c> record), or 0 without one.</summary>
    private static ulong VmClockNs(List<StateRecord> records)
    {
        var vm = records.FirstOrDefault(r => r.Name == KvmVmStateName);
        return vm is { Data.Length: >= 8 } ? System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(vm.Data.AsSpan(vm.Data.Length - 8)) : 0;
    }

    private const string KvmVmStateName = "kvm/vm";
}
