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
/// device, writes DIR (state.bin, config.json, memory.bin), and resumes unless <c>resume</c> is false.
/// </summary>
public static class SnapshotRequest
{
    private static readonly TimeSpan PauseTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Takes the snapshot <paramref name="request"/> asks for; <paramref name="configJson"/> becomes its config.json.</summary>
    public static SnapshotCreateReply Create(VirtualMachine machine, SnapshotCreateRequest request, string configJson)
    {
        if (string.IsNullOrEmpty(request.Path)) throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, "\"path\" must name the snapshot directory to create");
        if (request.Memory == SnapshotMemory.Diff)
            throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, "\"memory\": \"diff\" snapshots are not supported by this build yet (use \"full\")");
        string snapshotId = request.SnapshotId ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(request.Path)));
        var clock = Stopwatch.StartNew();
        var state = machine.State;
        if (state is not (VmState.Running or VmState.Paused))
            throw new ControlProtocolException(ControlErrorCodes.InvalidState, $"a snapshot needs a Running or Paused VM (it is {state})");
        string target;
        try { target = SnapshotDirectory.CheckTarget(request.Path); }
        catch (SnapshotException e) { throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, e.Message); }
        var disks = DisksToSnapshot(machine.Config, request.Disks == SnapshotDisks.Snapshot);

        bool wasRunning = state == VmState.Running;
        if (!machine.Pause(PauseTimeout)) throw new ControlProtocolException(ControlErrorCodes.Timeout, $"the vCPUs did not stop within {PauseTimeout.TotalSeconds:0} s");
        var paused = Stopwatch.StartNew();
        SnapshotWriteResult result;
        List<(string Path, string Id)> diskSnapshots;
        try
        {
            diskSnapshots = TakeDiskSnapshots(disks, snapshotId);
            byte[] stateBytes = SnapshotStateFile.Encode(machine.SaveState());
            result = SnapshotDirectory.Write(target, stateBytes, configJson, machine.Memory);
        }
        catch (Exception e)
        {
            // Nothing was written (SnapshotDirectory cleans up); the VM goes on as it was.
            if (wasRunning) machine.Resume();
            if (e is SnapshotException s) throw new ControlProtocolException(ControlErrorCodes.InternalError, s.Message);
            throw;
        }
        if (wasRunning && request.Resume) machine.Resume();
        return new SnapshotCreateReply
        {
            Path = result.Path,
            Memory = SnapshotMemory.Full,
            MemoryBytes = (long)result.MemoryDataBytes,
            StateBytes = result.StateBytes,
            DurationMs = (long)clock.Elapsed.TotalMilliseconds,
            PausedMs = (long)paused.Elapsed.TotalMilliseconds,
            DiskSnapshots = diskSnapshots.Select(d => new DiskSnapshotReply(d.Path, d.Id)).ToList(),
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
    /// HOOK for qcow2 internal snapshots (the qcow helper's <c>Qcow2Image.CreateSnapshot</c> on the open image, at this
    /// paused instant). Until the block device exposes its open image, qcow2 disks are refused like raw ones.
    /// </summary>
    private static List<(string Path, string Id)> TakeDiskSnapshots(List<BlockDeviceConfig> disks, string snapshotId)
    {
        if (disks.Count == 0) return [];
        throw new ControlProtocolException(ControlErrorCodes.InvalidState,
            $"disk {disks[0].Path}: qcow2 internal snapshots are not available in this build yet; pass \"disks\": \"ignore\" to snapshot without them");
    }
}
