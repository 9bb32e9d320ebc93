using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;

namespace KvmPS.Management.Snapshots;

/// <summary>
/// Incremental (diff) checkpoints: the VMM's snapshot directory of such a checkpoint holds only the pages written since
/// its parent's and names that parent's directory by absolute path in its <c>parent</c> file (docs/snapshots.md, "Diff
/// snapshots"). Restoring follows the chain, so a checkpoint other checkpoints build on must not go while they stay.
/// </summary>
public static class IncrementalChain
{
    /// <summary>The VMM's file naming a diff snapshot's parent directory.</summary>
    public const string ParentFileName = "parent";

    /// <summary>The directory <paramref name="vmmDirectory"/>'s memory builds on, or null for a full snapshot.</summary>
    public static string? ParentDirectoryOf(string vmmDirectory)
    {
        var path = Path.Combine(vmmDirectory, ParentFileName);
        return File.Exists(path) ? Path.TrimEndingDirectorySeparator(File.ReadAllText(path).Trim()) : null;
    }

    /// <summary>True when the checkpoint's memory is a diff on another snapshot.</summary>
    public static bool IsIncremental(VmSnapshot snapshot) =>
        snapshot.IncludesMemory && File.Exists(Path.Combine(snapshot.VmmDirectory, ParentFileName));

    /// <summary>
    /// For a diff the VMM just wrote into <paramref name="vmmDirectory"/> (a checkpoint's staging folder): the existing
    /// checkpoint it builds on, with its <c>parent</c> file pointed at that checkpoint's committed folder. The VMM names
    /// the folder it wrote its previous snapshot to, which for a checkpoint taken by management was the staging folder
    /// (<paramref name="stagingFor"/> maps a committed checkpoint to it) renamed since. A parent that is not a checkpoint of
    /// this VM (the VM was resumed from saved state, or that checkpoint was removed) → <see cref="ManagementValidationException"/>.
    /// </summary>
    public static VmSnapshot LinkParent(string vmName, string vmmDirectory, IReadOnlyList<VmSnapshot> checkpoints, Func<VmSnapshot, string> stagingFor)
    {
        var named = ParentDirectoryOf(vmmDirectory)
            ?? throw new InvalidOperationException($"VM '{vmName}': the VMM wrote no '{ParentFileName}' file into {vmmDirectory} for a diff snapshot");
        var parent = checkpoints.FirstOrDefault(c => c.IncludesMemory
            && (SamePath(c.VmmDirectory, named) || SamePath(Path.Combine(stagingFor(c), SnapshotStore.VmmDirectoryName), named)));
        if (parent is null)
            throw new ManagementValidationException(vmName, "Incremental",
                $"the VM's previous snapshot ('{named}') is not one of its checkpoints (it was resumed from saved state, or that checkpoint was removed); take a full checkpoint first");
        if (!SamePath(parent.VmmDirectory, named))
            DurableFile.WriteAtomically(Path.Combine(vmmDirectory, ParentFileName), System.Text.Encoding.UTF8.GetBytes(parent.VmmDirectory + "\n"));
        return parent;
    }

    /// <summary>
    /// Refuses to remove <paramref name="removed"/> while a checkpoint that stays is an incremental one built on one of
    /// them: its memory would be lost. Names both checkpoints.
    /// </summary>
    public static void CheckRemovable(string vmName, IReadOnlyList<VmSnapshot> all, IReadOnlyCollection<VmSnapshot> removed)
    {
        var removedIds = removed.Select(s => s.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var stays in all.Where(s => !removedIds.Contains(s.Id) && s.IncludesMemory))
        {
            if (ParentDirectoryOf(stays.VmmDirectory) is not { } parentDirectory)
                continue;
            if (removed.FirstOrDefault(r => SamePath(r.VmmDirectory, parentDirectory)) is { } parent)
                throw new ManagementValidationException(vmName, "Snapshot",
                    $"checkpoint '{parent.Name}' cannot be removed: the incremental checkpoint '{stays.Name}' holds only the memory changed since it; remove '{stays.Name}' first, or both with -IncludeAllChildSnapshots (--include-children)");
        }
    }

    private static bool SamePath(string a, string b) =>
        string.Equals(Path.TrimEndingDirectorySeparator(Path.GetFullPath(a)), Path.TrimEndingDirectorySeparator(Path.GetFullPath(b)), StringComparison.Ordinal);
}
