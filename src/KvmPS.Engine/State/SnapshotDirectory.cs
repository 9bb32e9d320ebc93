using Microsoft.Win32.SafeHandles;
using KvmPS.Vm;

namespace KvmPS.State;

/// <summary>What <see cref="SnapshotDirectory.Write"/> produced; <see cref="StateCrc"/> is state.bin's CRC-64, which a diff on it records.</summary>
public sealed record SnapshotWriteResult(string Path, ulong MemoryDataBytes, long StateBytes, ulong StateCrc);

/// <summary>A diff snapshot to write: its parent directory and that parent's state.bin CRC-64, and the pages it holds.</summary>
public sealed record SnapshotDiff(string ParentDirectory, ulong ParentStateCrc, GuestPageBitmap Pages);

/// <summary>One memory file of a restore chain: the full base (<see cref="Pages"/> null) or a diff with the pages it holds.</summary>
public sealed record SnapshotMemoryLayer(string Directory, string MemoryPath, long MemoryFileBytes, GuestPageBitmap? Pages);

/// <summary>A snapshot read back from disk: its records, the VMM configuration it was taken with, and its memory file.</summary>
public sealed record LoadedSnapshot(string Directory, IReadOnlyList<StateRecord> Records, string ConfigJson, string MemoryPath, long MemoryFileBytes)
{
    /// <summary>The qcow2 disks that took an internal snapshot with it (disks.json; empty without one).</summary>
    public IReadOnlyList<SnapshotDisk> Disks { get; init; } = [];

    /// <summary>state.bin's CRC-64 (its last 8 bytes): a diff taken on this snapshot records it.</summary>
    public ulong StateCrc { get; init; }

    /// <summary>Guest RAM as memory files, the full base first, then each diff of the chain up to this one (just this one for a full snapshot).</summary>
    public IReadOnlyList<SnapshotMemoryLayer> MemoryLayers { get; init; } = [];

    public string ConfigPath => System.IO.Path.Combine(Directory, SnapshotDirectory.ConfigFileName);
}

/// <summary>
/// A snapshot directory (docs/snapshots.md): state.bin, config.json, memory.bin and disks.json, and for a diff parent and
/// pages.bin. Written into a temporary directory beside the target and renamed into place, so a failure (out of space,
/// I/O error) leaves nothing behind.
/// </summary>
public static partial class SnapshotDirectory
{
    public const string StateFileName = "state.bin", ConfigFileName = "config.json", MemoryFileName = "memory.bin", ParentFileName = "parent";

    /// <summary>Refuses a target that exists and is not an empty directory; returns the full path.</summary>
    public static string CheckTarget(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        if (File.Exists(full)) throw new SnapshotException(full, "a file with this name exists (the snapshot path must be a new or empty directory)");
        if (System.IO.Directory.Exists(full) && System.IO.Directory.EnumerateFileSystemEntries(full).Any())
            throw new SnapshotException(full, "the directory is not empty (the snapshot path must be a new or empty directory)");
        string? parent = System.IO.Path.GetDirectoryName(full);
        if (parent is null || !System.IO.Directory.Exists(parent)) throw new SnapshotException(full, $"the parent directory {parent} does not exist");
        return full;
    }

    /// <summary>
    /// Writes a full snapshot (every page that may hold data; <paramref name="diff"/> null) or a diff (only
    /// <see cref="SnapshotDiff.Pages"/>, plus parent and pages.bin). Guest RAM must not change meanwhile (VM paused).
    /// </summary>
    public static SnapshotWriteResult Write(string path, byte[] state, string configJson, GuestMemory memory, IReadOnlyList<SnapshotDisk>? disks = null, SnapshotDiff? diff = null)
    {
        string target = CheckTarget(path);
        string temp = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(target)!, $".{System.IO.Path.GetFileName(target)}.tmp-{Environment.ProcessId}-{Environment.TickCount64}");
        try
        {
            System.IO.Directory.CreateDirectory(temp);
            WriteFile(System.IO.Path.Combine(temp, StateFileName), state);
            WriteFile(System.IO.Path.Combine(temp, ConfigFileName), System.Text.Encoding.UTF8.GetBytes(configJson));
            WriteFile(System.IO.Path.Combine(temp, SnapshotDiskFile.FileName), System.Text.Encoding.UTF8.GetBytes(SnapshotDiskFile.Encode(disks ?? [])));
            if (diff is not null)
            {
                WriteFile(System.IO.Path.Combine(temp, ParentFileName), System.Text.Encoding.UTF8.GetBytes(diff.ParentDirectory + "\n"));
                WriteFile(System.IO.Path.Combine(temp, SnapshotPagesFile.FileName), SnapshotPagesFile.Encode(new SnapshotPages(diff.Pages, diff.ParentStateCrc)));
            }
            ulong memoryBytes;
            using (var file = File.OpenHandle(System.IO.Path.Combine(temp, MemoryFileName), FileMode.CreateNew, FileAccess.ReadWrite))
            {
                memoryBytes = GuestMemoryFile.WriteSparse(memory, file, diff?.Pages ?? memory.PagesThatMayHoldData());
                RandomAccess.FlushToDisk(file);
            }
            if (System.IO.Directory.Exists(target)) System.IO.Directory.Delete(target); // empty, checked above
            System.IO.Directory.Move(temp, target);
            return new SnapshotWriteResult(target, memoryBytes, state.Length, StateCrcOf(state));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { if (System.IO.Directory.Exists(temp)) System.IO.Directory.Delete(temp, recursive: true); } catch (IOException) { }
            throw new SnapshotException(target, $"cannot write the snapshot: {Vmm.IoErrorText.Describe(e)}", e);
        }
    }

    private static void WriteFile(string path, byte[] data)
    {
        using var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write);
        RandomAccess.Write(file, data, 0);
        RandomAccess.FlushToDisk(file);
    }

    /// <summary>Reads and checks state.bin, config.json and disks.json and that memory.bin exists; errors name the file at fault.</summary>
    public static LoadedSnapshot Open(string path)
    {
        string dir = System.IO.Path.GetFullPath(path);
        if (!System.IO.Directory.Exists(dir)) throw new SnapshotException(dir, "the snapshot directory does not exist");
        string statePath = System.IO.Path.Combine(dir, StateFileName);
        string configPath = System.IO.Path.Combine(dir, ConfigFileName);
        string memoryPath = System.IO.Path.Combine(dir, MemoryFileName);
        byte[] state = ReadAll(statePath, "state file");
        var records = SnapshotStateFile.Decode(state, statePath);
        string config = System.Text.Encoding.UTF8.GetString(ReadAll(configPath, "configuration file"));
        if (!File.Exists(memoryPath)) throw new SnapshotException(memoryPath, "the memory file is missing");
        long memoryBytes = new FileInfo(memoryPath).Length;
        var disks = SnapshotDiskFile.Read(dir);
        var layers = MemoryChain(dir, memoryPath, memoryBytes);
        return new LoadedSnapshot(dir, records, config, memoryPath, memoryBytes) { Disks = disks, StateCrc = StateCrcOf(state), MemoryLayers = layers };
    }

    private static byte[] ReadAll(string path, string what)
    {
        if (!File.Exists(path)) throw new SnapshotException(path, $"the {what} is missing");
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new SnapshotException(path, $"cannot read the {what}: {Vmm.IoErrorText.Describe(e)}", e); }
    }

    /// <summary>Opens the memory file for a restore.</summary>
    public static SafeFileHandle OpenMemory(LoadedSnapshot snapshot) => OpenMemory(snapshot.MemoryPath);

    public static SafeFileHandle OpenMemory(string memoryPath)
    {
        try { return File.OpenHandle(memoryPath, FileMode.Open, FileAccess.Read); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new SnapshotException(memoryPath, $"cannot open the memory file: {Vmm.IoErrorText.Describe(e)}", e); }
    }

    /// <summary>The CRC-64 a state.bin ends with (checked by <see cref="SnapshotStateFile.Decode"/>).</summary>
    public static ulong StateCrcOf(ReadOnlySpan<byte> state) => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(state[^8..]);
}
