using System.Diagnostics;
using System.Text.Json;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio.Block;
using KvmPS.State;
using KvmPS.Storage;
using KvmPS.Vm;
using static KvmPS.Vmm.ControlProtocol;

namespace KvmPS.Vmm;

/// <summary>
/// Control request <c>snapshot.create</c> (docs/vmm.md, docs/snapshots.md): pauses every vCPU and every pausable
/// device, writes DIR (state.bin, config.json, memory.bin), and resumes unless <c>resume</c> is false.
/// </summary>
public static class SnapshotRequest
{
    public const string Name = "snapshot.create";
    private static readonly TimeSpan PauseTimeout = TimeSpan.FromSeconds(5);

    private sealed record Arguments(string Path, bool Resume, bool SnapshotDisks, string SnapshotId);

    public static void Handle(VirtualMachine machine, JsonElement request, string configJson, Utf8JsonWriter w)
    {
        var args = Parse(request);
        var clock = Stopwatch.StartNew();
        var state = machine.State;
        if (state is not (VmState.Running or VmState.Paused))
            throw new ControlRequestException(ErrorCodes.InvalidState, $"a snapshot needs a Running or Paused VM (it is {state})");
        string target;
        try { target = SnapshotDirectory.CheckTarget(args.Path); }
        catch (SnapshotException e) { throw new ControlRequestException(ErrorCodes.InvalidArgument, e.Message); }
        var disks = DisksToSnapshot(machine.Config, args.SnapshotDisks);

        bool wasRunning = state == VmState.Running;
        if (!machine.Pause(PauseTimeout)) throw new ControlRequestException(ErrorCodes.Timeout, $"the vCPUs did not stop within {PauseTimeout.TotalSeconds:0} s");
        var paused = Stopwatch.StartNew();
        SnapshotWriteResult result;
        List<(string Path, string Id)> diskSnapshots;
        try
        {
            diskSnapshots = TakeDiskSnapshots(disks, args.SnapshotId);
            byte[] stateBytes = SnapshotStateFile.Encode(machine.SaveState());
            result = SnapshotDirectory.Write(target, stateBytes, configJson, machine.Memory);
        }
        catch (Exception e)
        {
            // Nothing was written (SnapshotDirectory cleans up); the VM goes on as it was.
            if (wasRunning) machine.Resume();
            if (e is SnapshotException s) throw new ControlRequestException(ErrorCodes.InternalError, s.Message);
            throw;
        }
        if (wasRunning && args.Resume) machine.Resume();
        long pausedMs = (long)paused.Elapsed.TotalMilliseconds;

        w.WriteString("path", result.Path);
        w.WriteString("memory", "full");
        w.WriteNumber("memory_bytes", result.MemoryDataBytes);
        w.WriteNumber("state_bytes", result.StateBytes);
        w.WriteNumber("duration_ms", (long)clock.Elapsed.TotalMilliseconds);
        w.WriteNumber("paused_ms", pausedMs);
        w.WriteStartArray("disk_snapshots");
        foreach (var (path, id) in diskSnapshots) { w.WriteStartObject(); w.WriteString("path", path); w.WriteString("snapshot_id", id); w.WriteEndObject(); }
        w.WriteEndArray();
        w.WriteString("vm_state", machine.State.ToString());
    }

    private static Arguments Parse(JsonElement request)
    {
        string? path = request.TryGetProperty("path", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString() : null;
        if (string.IsNullOrEmpty(path)) throw new ControlRequestException(ErrorCodes.InvalidArgument, "\"path\" must name the snapshot directory to create");
        string memory = OptionalString(request, "memory") ?? "full";
        if (memory == "diff") throw new ControlRequestException(ErrorCodes.InvalidArgument, "\"memory\": \"diff\" snapshots are not supported by this build yet (use \"full\")");
        if (memory != "full") throw new ControlRequestException(ErrorCodes.InvalidArgument, $"\"memory\" must be \"full\" or \"diff\", not \"{memory}\"");
        bool resume = true;
        if (request.TryGetProperty("resume", out var r))
            resume = r.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new ControlRequestException(ErrorCodes.InvalidArgument, "\"resume\" must be true or false"),
            };
        string disks = OptionalString(request, "disks") ?? "snapshot";
        if (disks is not ("snapshot" or "ignore")) throw new ControlRequestException(ErrorCodes.InvalidArgument, $"\"disks\" must be \"snapshot\" or \"ignore\", not \"{disks}\"");
        string id = OptionalString(request, "snapshot_id") ?? System.IO.Path.GetFileName(System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(path)));
        return new Arguments(path, resume, disks == "snapshot", id);
    }

    private static string? OptionalString(JsonElement request, string name)
    {
        if (!request.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw new ControlRequestException(ErrorCodes.InvalidArgument, $"\"{name}\" must be a string");
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
                throw new ControlRequestException(ErrorCodes.InvalidState,
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
        throw new ControlRequestException(ErrorCodes.InvalidState,
            $"disk {disks[0].Path}: qcow2 internal snapshots are not available in this build yet; pass \"disks\": \"ignore\" to snapshot without them");
    }
}
