using System.Buffers;
using System.Globalization;
using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.Snapshots;
using KvmPS.Management.Store;

namespace KvmPS.Management.Lifecycle;

/// <summary>The result of <see cref="VmManager.Export"/>.</summary>
/// <param name="Path">The exported VM's folder: <c>&lt;target&gt;/&lt;name&gt;</c>.</param>
public sealed record VmExportResult(string Name, string Path, long SizeBytes, int Snapshots, bool IncludesSavedState);

// Export-VM / Import-VM: a VM with its definition, disks, checkpoints and saved state moved or cloned between stores.
public sealed partial class VmManager
{
    /// <summary>The description of an exported VM folder, next to its vm.json.</summary>
    public const string ExportManifestFileName = "export.json";

    private const int ExportFormatVersion = 1;

    /// <summary>
    /// Exports the VM into <c><paramref name="path"/>/&lt;name&gt;/</c> (as Hyper-V's Export-VM): vm.json, every disk (disks
    /// outside the store are copied in too, and the definition points to the copies), checkpoints and saved state, plus
    /// export.json recording where things were. The VM must be off or saved (its disks closed). Assembled in a hidden
    /// folder beside the target and renamed into place, so a failed export leaves nothing.
    /// </summary>
    public VmExportResult Export(string name, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var target = Path.Combine(Path.GetFullPath(path), name);
        using (Store.Lock())
        {
            var definition = Store.Get(name);
            var probe = Probe(name);
            if (probe.State is not (VmState.Off or VmState.Saved) || probe.Active)
                throw new VmStateException(name, probe.State, $"VM '{name}' is {Describe(probe.State)}; only a VM that is off or saved can be exported");
            for (var i = 0; i < definition.Disks.Count; i++)
                if (definition.Disks[i].BackingImagePath is { } backing)
                    throw new VmExportException(name, target, $"disk {i} ('{definition.Disks[i].Path}') has the backing image '{backing}', which an export cannot carry yet");
            if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any() || File.Exists(target))
                throw new VmExportException(name, target, "it already exists");
            var snapshots = Snapshots;
            var checkpoints = snapshots.List(name); // refuses corrupt metadata before anything is copied
            var saved = snapshots.TryGetSaved(name);

            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            var partial = Path.Combine(Path.GetDirectoryName(target)!, $".{name}.export-{Guid.NewGuid():N}");
            try
            {
                var vmDirectory = Store.VmDirectory(name);
                CopyDirectory(Store.DiskDirectory(name), Path.Combine(partial, VmStore.DiskDirectoryName));
                var diskEntries = new List<(string Original, string Exported)>();
                var disks = new List<DiskDefinition>();
                var diskDirectory = Store.DiskDirectory(name) + "/";
                foreach (var disk in definition.Disks)
                {
                    var resolved = Store.ResolveDiskPath(name, disk.Path);
                    if (resolved.StartsWith(diskDirectory, StringComparison.Ordinal))
                    {
                        disks.Add(disk);
                        continue;
                    }
                    // Outside the store: copied into disks/ under a name not taken yet.
                    var fileName = UniqueFileName(Path.Combine(partial, VmStore.DiskDirectoryName), Path.GetFileName(resolved));
                    File.Copy(resolved, Path.Combine(partial, VmStore.DiskDirectoryName, fileName));
                    diskEntries.Add((resolved, fileName));
                    disks.Add(disk with { Path = fileName });
                }
                foreach (var folder in new[] { SnapshotStore.SnapshotsDirectoryName, SnapshotStore.SavedDirectoryName })
                    if (Directory.Exists(Path.Combine(vmDirectory, folder)))
                        CopyDirectory(Path.Combine(vmDirectory, folder), Path.Combine(partial, folder));
                var exported = definition with { Disks = new ValueList<DiskDefinition>(disks) };
                File.WriteAllBytes(Path.Combine(partial, VmStore.DefinitionFileName), VmDefinitionJson.SerializeToUtf8Bytes(exported));
                File.WriteAllBytes(Path.Combine(partial, ExportManifestFileName), WriteExportManifest(name, vmDirectory, diskEntries));
                if (Directory.Exists(target))
                    Directory.Delete(target); // empty, checked above
                Directory.Move(partial, target);
            }
            catch
            {
                TryQuietly(() => Directory.Delete(partial, recursive: true));
                throw;
            }
            return new VmExportResult(name, target, SnapshotStore.DirectorySizeBytes(target), checkpoints.Count, saved is not null);
        }
    }

    /// <summary>
    /// Imports an exported VM (as Hyper-V's Import-VM). <paramref name="path"/> is the exported VM's folder, or a folder
    /// holding exactly one. Without <paramref name="copy"/> the VM moves into the store (the export is removed once the
    /// VM is in place); with it the export stays. <paramref name="generateNewId"/> makes a clone: new MAC addresses and
    /// a new vsock CID, in the definition and in every checkpoint. Paths inside the VM folder and to disks that were
    /// outside the store are rewritten to the new place. A VM of that name already in the store →
    /// <see cref="VmAlreadyExistsException"/>; an unreadable export → <see cref="VmImportException"/> or
    /// <see cref="SnapshotMetadataCorruptException"/> naming the file. Nothing is left half-imported.
    /// </summary>
    public VmInfo Import(string path, bool copy = false, bool generateNewId = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var source = FindExportedVm(Path.GetFullPath(path));
        var definitionPath = Path.Combine(source, VmStore.DefinitionFileName);
        VmDefinition definition;
        try
        {
            definition = VmDefinitionJson.Deserialize(File.ReadAllBytes(definitionPath));
        }
        catch (Exception e) when (e is VmDefinitionException or IOException)
        {
            throw new VmImportException(Path.GetFileName(source), definitionPath, e.Message, e);
        }
        var name = definition.Name;
        var manifest = ReadExportManifest(name, Path.Combine(source, ExportManifestFileName));

        using (Store.Lock())
        {
            if (Store.Exists(name))
                throw new VmAlreadyExistsException(name, Store.VmDirectory(name));
            var staging = Store.CreateStagingWhileLocked(name);
            try
            {
                CopyDirectory(source, staging);
                File.Delete(Path.Combine(staging, ExportManifestFileName));
                var newVmDirectory = Store.VmDirectory(name);
                var diskPaths = manifest.Disks.ToDictionary(d => d.Original, d => Path.Combine(newVmDirectory, VmStore.DiskDirectoryName, d.Exported), StringComparer.Ordinal);
                var macs = generateNewId
                    ? definition.NetworkAdapters.Select((a, i) => (a.MacAddress, New: MacAddress.GenerateLocallyAdministered($"{name}/{i}/{Guid.NewGuid():N}")))
                        .ToDictionary(p => p.MacAddress, p => p.New)
                    : new Dictionary<MacAddress, MacAddress>();
                var rewriter = new ExportedVmRewriter(manifest.SourceVmDirectory, newVmDirectory, diskPaths, macs,
                    generateNewId ? ExportedVmRewriter.NewCid(null) : null);
                RewriteImported(staging, name, definition, rewriter);
                Store.MoveIntoPlaceWhileLocked(staging, name);
            }
            catch
            {
                TryQuietly(() => Directory.Delete(staging, recursive: true));
                throw;
            }
        }
        if (!copy)
            TryQuietly(() => Directory.Delete(source, recursive: true));
        return Get(name);
    }

    // ---- internals ---------------------------------------------------------------------------------

    private sealed record ExportManifest(string SourceVmDirectory, IReadOnlyList<(string Original, string Exported)> Disks);

    /// <summary>Rewrites the staged copy for its new place: vm.json, and in each checkpoint and the saved state the metadata, definition and VMM configuration.</summary>
    private void RewriteImported(string staging, string name, VmDefinition definition, ExportedVmRewriter rewriter)
    {
        File.WriteAllBytes(Path.Combine(staging, VmStore.DefinitionFileName), VmDefinitionJson.SerializeToUtf8Bytes(rewriter.MapDefinition(definition)));
        var snapshotsDirectory = Path.Combine(staging, SnapshotStore.SnapshotsDirectoryName);
        if (Directory.Exists(snapshotsDirectory))
            foreach (var directory in Directory.EnumerateDirectories(snapshotsDirectory).Where(d => !Path.GetFileName(d).StartsWith('.')))
            {
                var metadataPath = Path.Combine(directory, SnapshotStore.MetadataFileName);
                var snapshot = SnapshotMetadataJson.ReadSnapshot(name, metadataPath, Path.GetFileName(directory));
                File.WriteAllBytes(metadataPath, SnapshotMetadataJson.Serialize(rewriter.MapSnapshot(snapshot)));
                var snapshotDefinition = Path.Combine(directory, VmStore.DefinitionFileName);
                if (File.Exists(snapshotDefinition))
                    RewriteFile(name, snapshotDefinition, bytes => VmDefinitionJson.SerializeToUtf8Bytes(rewriter.MapDefinition(VmDefinitionJson.Deserialize(bytes))));
                RewriteVmmDirectory(name, Path.Combine(directory, SnapshotStore.VmmDirectoryName), rewriter);
            }
        var saved = Path.Combine(staging, SnapshotStore.SavedDirectoryName);
        if (Directory.Exists(saved))
        {
            SnapshotMetadataJson.ReadSaved(name, Path.Combine(saved, SnapshotStore.SavedMetadataFileName));
            RewriteVmmDirectory(name, Path.Combine(saved, SnapshotStore.VmmDirectoryName), rewriter);
        }
    }

    private static void RewriteVmmDirectory(string name, string vmmDirectory, ExportedVmRewriter rewriter)
    {
        var config = Path.Combine(vmmDirectory, "config.json");
        if (File.Exists(config))
            RewriteFile(name, config, bytes => rewriter.MapVmmConfig(bytes));
        var parent = Path.Combine(vmmDirectory, "parent"); // diff snapshots: the parent's absolute path
        if (File.Exists(parent))
            File.WriteAllText(parent, rewriter.MapPath(File.ReadAllText(parent).Trim()) + "\n");
    }

    private static void RewriteFile(string name, string path, Func<byte[], byte[]> rewrite)
    {
        byte[] rewritten;
        try
        {
            rewritten = rewrite(File.ReadAllBytes(path));
        }
        catch (Exception e) when (e is JsonException or VmDefinitionException)
        {
            throw new VmImportException(name, path, $"it cannot be read: {e.Message}", e);
        }
        File.WriteAllBytes(path, rewritten);
    }

    private static string FindExportedVm(string path)
    {
        if (File.Exists(Path.Combine(path, VmStore.DefinitionFileName)))
            return path;
        if (!Directory.Exists(path))
            throw new VmImportException("", path, "the folder does not exist");
        var candidates = Directory.EnumerateDirectories(path).Where(d => File.Exists(Path.Combine(d, VmStore.DefinitionFileName))).ToList();
        return candidates.Count switch
        {
            1 => candidates[0],
            0 => throw new VmImportException("", path, $"it holds no exported VM (no {VmStore.DefinitionFileName})"),
            _ => throw new VmImportException("", path, $"it holds {candidates.Count} exported VMs ({string.Join(", ", candidates.Select(Path.GetFileName))}); give the folder of one"),
        };
    }

    private static byte[] WriteExportManifest(string name, string vmDirectory, List<(string Original, string Exported)> disks)
    {
        var output = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("format_version", ExportFormatVersion);
            w.WriteString("vm_name", name);
            w.WriteString("exported_utc", DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture));
            w.WriteString("source_vm_directory", vmDirectory);
            w.WriteStartArray("disks");
            foreach (var (original, exported) in disks)
            {
                w.WriteStartObject();
                w.WriteString("original_path", original);
                w.WriteString("path", exported);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return output.WrittenSpan.ToArray();
    }

    private static ExportManifest ReadExportManifest(string name, string path)
    {
        VmImportException Fail(string reason, Exception? inner = null) => new(name, path, reason, inner);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw Fail("the export description is missing (was the folder made by Export-KvmVm?)", e);
        }
        catch (JsonException e)
        {
            throw Fail($"it is not valid JSON ({e.Message})", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw Fail("it is not a JSON object");
            if (!root.TryGetProperty("format_version", out var v) || !v.TryGetInt32(out var version) || version < 1)
                throw Fail("'format_version' is missing or invalid");
            if (version > ExportFormatVersion)
                throw Fail($"it has format version {version}; this KvmPS reads up to {ExportFormatVersion}");
            if (!root.TryGetProperty("vm_name", out var vmName) || vmName.ValueKind != JsonValueKind.String || vmName.GetString() != name)
                throw Fail($"'vm_name' does not name VM '{name}' of {VmStore.DefinitionFileName}");
            if (!root.TryGetProperty("source_vm_directory", out var sourceElement) || sourceElement.ValueKind != JsonValueKind.String
                || sourceElement.GetString() is not { } source || !Path.IsPathRooted(source))
                throw Fail("'source_vm_directory' is missing or not an absolute path");
            var disks = new List<(string, string)>();
            if (!root.TryGetProperty("disks", out var array) || array.ValueKind != JsonValueKind.Array)
                throw Fail("'disks' is missing or not an array");
            var index = 0;
            foreach (var item in array.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Object
                    || !item.TryGetProperty("original_path", out var original) || original.ValueKind != JsonValueKind.String
                    || !item.TryGetProperty("path", out var exported) || exported.ValueKind != JsonValueKind.String
                    || exported.GetString() is not { Length: > 0 } file || file.Contains('/') || file is "." or "..")
                    throw Fail($"'disks[{index}]' needs 'original_path' and 'path' (a file name in disks/)");
                disks.Add((original.GetString()!, file));
                index++;
            }
            return new ExportManifest(source, disks);
        }
    }

    private static string UniqueFileName(string directory, string fileName)
    {
        var candidate = fileName;
        for (var n = 2; File.Exists(Path.Combine(directory, candidate)) || Directory.Exists(Path.Combine(directory, candidate)); n++)
            candidate = $"{Path.GetFileNameWithoutExtension(fileName)}-{n}{Path.GetExtension(fileName)}";
        return candidate;
    }

    /// <summary>Copies a tree; hidden staging folders (a leftover <c>.tmp-</c>) are skipped.</summary>
    private static void CopyDirectory(string source, string destination)
    {
        Directory.CreateDirectory(destination);
        if (!Directory.Exists(source))
            return;
        foreach (var file in Directory.EnumerateFiles(source))
            File.Copy(file, Path.Combine(destination, Path.GetFileName(file)));
        foreach (var directory in Directory.EnumerateDirectories(source))
            if (!Path.GetFileName(directory).StartsWith('.'))
                CopyDirectory(directory, Path.Combine(destination, Path.GetFileName(directory)));
    }
}
