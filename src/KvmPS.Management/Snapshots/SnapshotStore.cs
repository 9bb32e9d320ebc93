using System.Text;
using KvmPS.Management.Store;

namespace KvmPS.Management.Snapshots;

/// <summary>
/// Where a VM's checkpoints and saved state live in the store, and their metadata:
/// <code>
/// &lt;vm&gt;/snapshots/&lt;id&gt;/snapshot.json   name, id, time, parent, size, memory?, VM state, disk snapshot ids
/// &lt;vm&gt;/snapshots/&lt;id&gt;/vm.json         the definition at checkpoint time (restored with it, as Hyper-V does)
/// &lt;vm&gt;/snapshots/&lt;id&gt;/vmm/            the VMM's snapshot directory (state.bin, config.json, memory.bin), with memory only
/// &lt;vm&gt;/snapshots/current                the id the VM was last checkpointed or restored to: the parent of the next one
/// &lt;vm&gt;/saved/saved.json, saved/vmm/      the state of a Saved VM
/// </code>
/// Folders by id (a Hyper-V style name holds '/' and ':'); names are unique per VM. A checkpoint is assembled in
/// <c>snapshots/.tmp-&lt;id&gt;</c> and renamed into place, saved state in <c>.saving-&lt;id&gt;</c>, so a crash leaves
/// either none or a whole one; leftovers are removed by <see cref="RemoveLeftovers"/>. Callers hold the store lock for writes.
/// </summary>
public sealed class SnapshotStore
{
    public const string SnapshotsDirectoryName = "snapshots";
    public const string SavedDirectoryName = "saved";
    public const string MetadataFileName = "snapshot.json";
    public const string SavedMetadataFileName = "saved.json";
    public const string VmmDirectoryName = "vmm";
    public const string CurrentFileName = "current";
    private const string StagingPrefix = ".tmp-";
    private const string SavingPrefix = ".saving-";

    public SnapshotStore(VmStore store) => Store = store ?? throw new ArgumentNullException(nameof(store));

    public VmStore Store { get; }

    public string SnapshotsDirectory(string vmName) => Path.Combine(Store.VmDirectory(vmName), SnapshotsDirectoryName);
    public string SavedDirectory(string vmName) => Path.Combine(Store.VmDirectory(vmName), SavedDirectoryName);

    /// <summary>A new checkpoint id: 32 hex digits, also used as the disks' internal qcow2 snapshot id.</summary>
    public static string NewId() => Guid.NewGuid().ToString("N");

    // ---- checkpoints -------------------------------------------------------------------------------

    /// <summary>The VM's checkpoints, oldest first. A folder with unreadable metadata → <see cref="SnapshotMetadataCorruptException"/>.</summary>
    public IReadOnlyList<VmSnapshot> List(string vmName)
    {
        var directory = SnapshotsDirectory(vmName);
        if (!Directory.Exists(directory))
            return Array.Empty<VmSnapshot>();
        return Directory.EnumerateDirectories(directory)
            .Where(d => !Path.GetFileName(d).StartsWith('.'))
            .Select(d => SnapshotMetadataJson.ReadSnapshot(vmName, Path.Combine(d, MetadataFileName), Path.GetFileName(d)))
            .OrderBy(s => s.CreationTimeUtc).ThenBy(s => s.Name, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>The checkpoint named <paramref name="snapshotName"/> (exact, ordinal); <see cref="SnapshotNotFoundException"/> if none.</summary>
    public VmSnapshot Get(string vmName, string snapshotName) =>
        List(vmName).FirstOrDefault(s => string.Equals(s.Name, snapshotName, StringComparison.Ordinal))
        ?? throw new SnapshotNotFoundException(vmName, snapshotName);

    /// <summary>Where checkpoint <paramref name="id"/> is written before it is renamed into place (the VMM is told this path).</summary>
    public string StagingDirectory(string vmName, string id) => Path.Combine(SnapshotsDirectory(vmName), StagingPrefix + id);

    /// <summary>An empty staging folder for a new checkpoint; the VMM writes into its <c>vmm/</c> (which must not exist yet).</summary>
    public string CreateStaging(string vmName, string id)
    {
        var staging = StagingDirectory(vmName, id);
        StoreConfinement.CreateDirectory(staging);
        // A jailed VMM writes the snapshot as the kvmps user (docs/confinement.md, "The jail").
        Vmm.VmmJailOptions.GiveToVmmOf(Store.VmDirectory(vmName), staging);
        return staging;
    }

    /// <summary>Writes the metadata (and the definition at checkpoint time) into <paramref name="staging"/> and renames it into place.</summary>
    public VmSnapshot Commit(string staging, VmSnapshot snapshot, byte[] definitionJson)
    {
        var size = DirectorySizeBytes(staging) + definitionJson.Length;
        var final = Path.Combine(SnapshotsDirectory(snapshot.VmName), snapshot.Id);
        var committed = snapshot with { SizeBytes = size, Directory = final };
        DurableFile.WriteAtomically(Path.Combine(staging, VmStore.DefinitionFileName), definitionJson);
        DurableFile.WriteAtomically(Path.Combine(staging, MetadataFileName), SnapshotMetadataJson.Serialize(committed));
        StoreConfinement.RestrictTree(staging); // the VMM's memory and state files: 0600 like the rest of the store
        Directory.Move(staging, final);
        DurableFile.FsyncDirectory(SnapshotsDirectory(snapshot.VmName));
        return committed;
    }

    /// <summary>Rewrites a checkpoint's metadata in place (a new parent after its parent was removed).</summary>
    public void Rewrite(VmSnapshot snapshot) =>
        DurableFile.WriteAtomically(Path.Combine(snapshot.Directory, MetadataFileName), SnapshotMetadataJson.Serialize(snapshot));

    /// <summary>The definition stored with a checkpoint.</summary>
    public static string DefinitionPath(VmSnapshot snapshot) => Path.Combine(snapshot.Directory, VmStore.DefinitionFileName);

    /// <summary>Deletes a checkpoint's folder: renamed aside first so a crash never leaves a half-deleted checkpoint that lists.</summary>
    public void Delete(VmSnapshot snapshot)
    {
        var doomed = Path.Combine(SnapshotsDirectory(snapshot.VmName), StagingPrefix + "delete-" + snapshot.Id);
        Directory.Move(snapshot.Directory, doomed);
        Directory.Delete(doomed, recursive: true);
    }

    /// <summary>The id of the checkpoint the VM was last checkpointed or restored to, if it still exists.</summary>
    public string? CurrentId(string vmName)
    {
        var path = Path.Combine(SnapshotsDirectory(vmName), CurrentFileName);
        try
        {
            var id = File.ReadAllText(path).Trim();
            return id.Length > 0 && Directory.Exists(Path.Combine(SnapshotsDirectory(vmName), id)) ? id : null;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    public void SetCurrent(string vmName, string? id)
    {
        var path = Path.Combine(SnapshotsDirectory(vmName), CurrentFileName);
        if (id is null)
        {
            File.Delete(path);
            return;
        }
        StoreConfinement.CreateDirectory(SnapshotsDirectory(vmName));
        DurableFile.WriteAtomically(path, Encoding.ASCII.GetBytes(id + "\n"));
    }

    // ---- saved state -------------------------------------------------------------------------------

    /// <summary>True when the VM has saved state (it is Saved while no VMM runs).</summary>
    public bool HasSavedState(string vmName) => File.Exists(Path.Combine(SavedDirectory(vmName), SavedMetadataFileName));

    /// <summary>The saved state, or null; unreadable metadata → <see cref="SnapshotMetadataCorruptException"/>.</summary>
    public VmSavedState? TryGetSaved(string vmName) =>
        HasSavedState(vmName) ? SnapshotMetadataJson.ReadSaved(vmName, Path.Combine(SavedDirectory(vmName), SavedMetadataFileName)) : null;

    public string CreateSavedStaging(string vmName)
    {
        var staging = Path.Combine(Store.VmDirectory(vmName), SavingPrefix + NewId());
        StoreConfinement.CreateDirectory(staging);
        Vmm.VmmJailOptions.GiveToVmmOf(Store.VmDirectory(vmName), staging); // a jailed VMM writes it as its user
        return staging;
    }

    public VmSavedState CommitSaved(string staging, VmSavedState saved)
    {
        var final = SavedDirectory(saved.VmName);
        var committed = saved with { SizeBytes = DirectorySizeBytes(staging), Directory = final };
        DurableFile.WriteAtomically(Path.Combine(staging, SavedMetadataFileName), SnapshotMetadataJson.Serialize(committed));
        StoreConfinement.RestrictTree(staging);
        if (Directory.Exists(final))
            DeleteSaved(saved.VmName);
        Directory.Move(staging, final);
        DurableFile.FsyncDirectory(Store.VmDirectory(saved.VmName));
        return committed;
    }

    public void DeleteSaved(string vmName)
    {
        var directory = SavedDirectory(vmName);
        if (!Directory.Exists(directory))
            return;
        var doomed = Path.Combine(Store.VmDirectory(vmName), SavingPrefix + "delete-" + NewId());
        Directory.Move(directory, doomed);
        Directory.Delete(doomed, recursive: true);
    }

    /// <summary>The files kvmps-vmm needs to restore from a snapshot directory (docs/snapshots.md).</summary>
    public static readonly string[] VmmSnapshotFiles = ["state.bin", "config.json", "memory.bin"];

    /// <summary>
    /// Refuses a VMM snapshot directory with a file missing, naming it, before anything is stopped or changed (kvmps-vmm
    /// checks the rest: CRC, version, disks).
    /// </summary>
    public static void CheckVmmDirectory(string vmName, string vmmDirectory, string metadataPath)
    {
        foreach (var file in VmmSnapshotFiles)
        {
            var path = Path.Combine(vmmDirectory, file);
            if (!File.Exists(path))
                throw new SnapshotMetadataCorruptException(vmName, metadataPath, $"'{path}' is missing");
        }
    }

    // ---- housekeeping ------------------------------------------------------------------------------

    /// <summary>Removes staging folders an interrupted checkpoint, save or delete left behind. Caller holds the store lock.</summary>
    public void RemoveLeftovers(string vmName)
    {
        var snapshots = SnapshotsDirectory(vmName);
        if (Directory.Exists(snapshots))
            foreach (var d in Directory.EnumerateDirectories(snapshots, StagingPrefix + "*").ToList())
                Directory.Delete(d, recursive: true);
        foreach (var d in Directory.EnumerateDirectories(Store.VmDirectory(vmName), SavingPrefix + "*").ToList())
            Directory.Delete(d, recursive: true);
    }

    /// <summary>Sum of the apparent sizes of the files under <paramref name="directory"/>.</summary>
    public static long DirectorySizeBytes(string directory) =>
        Directory.Exists(directory)
            ? new DirectoryInfo(directory).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length)
            : 0;
}
