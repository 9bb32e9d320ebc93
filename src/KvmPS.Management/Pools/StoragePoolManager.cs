using KvmPS.Interop;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;

namespace KvmPS.Management.Pools;

/// <summary>
/// Storage pools and their volumes: the one API the cmdlets, the CLI, the reconciler and <c>kvmps autostart</c> call.
/// Stateless apart from the store (pool files in <c>&lt;store&gt;/pools/</c>, see <see cref="StoragePoolRegistry"/>), so a
/// new manager or process sees every pool. Changes run under the store lock. Errors are typed
/// (<see cref="StoragePoolException"/> and subclasses) and name the pool, volume and setting; a refused operation
/// leaves nothing behind (no pool file, no folder, no image).
/// </summary>
public sealed class StoragePoolManager
{
    public StoragePoolManager(VmStore store) => Store = store ?? throw new ArgumentNullException(nameof(store));

    public VmStore Store { get; }

    // ---- pools -------------------------------------------------------------------------------------

    /// <summary>Every pool with its space, <c>default</c> first. The <c>default</c> pool's folder is created if missing.</summary>
    public IReadOnlyList<StoragePoolInfo> List()
    {
        EnsureDefaultFolder();
        return StoragePoolRegistry.List(Store.Root).Select(ToInfo).ToList();
    }

    public StoragePoolInfo Get(string name) => ToInfo(Definition(name));

    public StoragePoolInfo? TryGet(string name)
    {
        StoragePoolNames.ValidatePool(name);
        if (name == StoragePoolNames.DefaultPool)
            EnsureDefaultFolder();
        return StoragePoolRegistry.TryGet(Store.Root, name) is { } pool ? ToInfo(pool) : null;
    }

    /// <summary>The stored pool (no space figures).</summary>
    public StoragePoolDefinition Definition(string name)
    {
        StoragePoolNames.ValidatePool(name);
        if (name == StoragePoolNames.DefaultPool)
            EnsureDefaultFolder();
        return StoragePoolRegistry.Get(Store.Root, name);
    }

    /// <summary>
    /// Defines a directory pool on <paramref name="path"/> (absolute). The folder must exist, be a folder, be readable
    /// and writable, be owned by root or us and not writable by others, and have free space; with
    /// <paramref name="createPath"/> a missing folder is created (0700). A name or folder another pool has is refused.
    /// </summary>
    public StoragePoolInfo Create(string name, string path, bool autostart = false, bool createPath = false)
    {
        StoragePoolNames.ValidatePool(name);
        ArgumentNullException.ThrowIfNull(path);
        using (Store.Lock())
        {
            if (StoragePoolRegistry.TryGet(Store.Root, name) is not null)
                throw new StoragePoolAlreadyExistsException(name, name == StoragePoolNames.DefaultPool
                    ? "is the built-in pool (it always exists, at '" + StoragePoolRegistry.DefaultPoolPath(Store.Root) + "')"
                    : "a pool of that name already exists");
            var full = CheckPath(name, path, createPath, out var created);
            try
            {
                StoragePoolRegistry.Write(Store.Root, new StoragePoolDefinition(name, full, autostart));
            }
            catch
            {
                if (created)
                    TryDeleteEmptyFolder(full);
                throw;
            }
        }
        return Get(name);
    }

    /// <summary>Changes autostart, or moves the pool to another folder (its VMs' pool references follow it).</summary>
    public StoragePoolInfo Set(string name, string? path = null, bool? autostart = null, bool createPath = false)
    {
        using (Store.Lock())
        {
            var pool = Definition(name);
            if (pool.IsDefault)
                throw new StoragePoolSettingException(name, path is null ? "Autostart" : "Path", path ?? autostart?.ToString() ?? "", "cannot be changed: 'default' is the built-in pool");
            var full = pool.Path;
            var created = false;
            if (path is not null && Path.GetFullPath(path) != pool.Path)
                full = CheckPath(name, path, createPath, out created);
            try
            {
                StoragePoolRegistry.Write(Store.Root, pool with { Path = full, Autostart = autostart ?? pool.Autostart });
            }
            catch
            {
                if (created)
                    TryDeleteEmptyFolder(full);
                throw;
            }
        }
        return Get(name);
    }

    /// <summary>
    /// Forgets a pool (its folder and volumes stay on disk). Refused for <c>default</c> and while a VM definition uses
    /// one of its volumes (the VMs are named).
    /// </summary>
    public void Remove(string name)
    {
        StoragePoolNames.ValidatePool(name);
        using (Store.Lock())
        {
            var pool = StoragePoolRegistry.Get(Store.Root, name);
            if (pool.IsDefault)
                throw new StoragePoolInUseException(name, [], "Storage pool 'default' is the built-in pool and cannot be removed");
            var users = VmsUsingPool(pool);
            if (users.Count > 0)
                throw new StoragePoolInUseException(name, users,
                    $"Storage pool '{name}' is in use: {(users.Count == 1 ? "VM" : "VMs")} {string.Join(", ", users.Select(u => $"'{u}'"))} {(users.Count == 1 ? "uses" : "use")} its volumes. Remove those disks (or the VMs) first.");
            StoragePoolRegistry.Delete(Store.Root, name);
        }
    }

    /// <summary>
    /// Re-creates a pool's missing folder (0700): drift repair and <c>kvmps autostart</c>. Returns true if it was missing.
    /// An existing path that is not a folder is refused.
    /// </summary>
    public bool EnsureFolder(string name)
    {
        var pool = Definition(name);
        var status = FileOwnership.Of(pool.Path);
        if (status is { IsDirectory: true } || (status is { IsSymlink: true } && Directory.Exists(pool.Path)))
            return false;
        if (status is not null)
            throw new StoragePoolSettingException(name, "Path", pool.Path, "is not a folder");
        StoreConfinement.CreateDirectory(pool.Path);
        return true;
    }

    /// <summary>
    /// What <c>kvmps autostart</c> does before starting VMs: for every pool with autostart, the folder is checked and
    /// re-created if missing. Never throws for one pool: each gets a result (null error = fine; Created = it was missing).
    /// </summary>
    public IReadOnlyList<(string Pool, bool Created, Exception? Error)> AutostartPools()
    {
        var results = new List<(string, bool, Exception?)>();
        IReadOnlyList<StoragePoolDefinition> pools;
        try
        {
            pools = StoragePoolRegistry.List(Store.Root);
        }
        catch (Exception e) when (e is VmStoreException or IOException or UnauthorizedAccessException)
        {
            return [("*", false, e)];
        }
        foreach (var pool in pools.Where(p => p.Autostart))
        {
            try
            {
                results.Add((pool.Name, EnsureFolder(pool.Name), null));
            }
            catch (Exception e) when (e is StoragePoolException or VmStoreException or IOException or UnauthorizedAccessException)
            {
                results.Add((pool.Name, false, e));
            }
        }
        return results;
    }

    /// <summary>VMs whose definitions use a volume of <paramref name="pool"/> (by reference or by a path in its folder), by name.</summary>
    public IReadOnlyList<string> VmsUsingPool(StoragePoolDefinition pool)
    {
        var folder = ResolvedPath.Of(pool.Path) + "/";
        var users = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var (vm, disk, resolved) in DiskUses())
            if ((PoolVolumeReference.IsReference(disk) && SafeParse(disk)?.Pool == pool.Name) || (resolved is not null && resolved.StartsWith(folder, StringComparison.Ordinal)))
                users.Add(vm);
        return users.ToList();
    }

    // ---- volumes -----------------------------------------------------------------------------------

    /// <summary>The file of a volume (it need not exist).</summary>
    public string VolumePath(string pool, string volume)
    {
        var definition = Definition(pool);
        StoragePoolNames.ValidateVolume(pool, volume);
        return Path.Combine(definition.Path, volume);
    }

    /// <summary>
    /// The disk path a definition keeps for volume <paramref name="volume"/> of pool <paramref name="pool"/>
    /// (<c>pool://pool/volume</c>): the pool must exist and the name be a volume name, checked now rather than at the
    /// next start. The one rule for <c>Add-KvmDisk -Pool</c> and <c>kvmps vm attach-disk --pool</c>.
    /// </summary>
    public string VolumeReference(string pool, string volume)
    {
        Definition(pool);
        StoragePoolNames.ValidateVolume(pool, volume);
        return PoolVolumeReference.Format(pool, volume);
    }

    /// <summary>The volumes (regular files not starting with '.') of a pool, by name.</summary>
    public IReadOnlyList<StorageVolumeInfo> ListVolumes(string pool)
    {
        var definition = Definition(pool);
        if (!Directory.Exists(definition.Path))
            throw new StoragePoolSettingException(pool, "Path", definition.Path, "does not exist (the pool's folder is missing; kvmps autostart or applying the manifest re-creates it)");
        var users = UsersByPath();
        return Directory.EnumerateFiles(definition.Path)
            .Select(Path.GetFileName)
            .Where(n => n is not null && StoragePoolNames.VolumeNameProblem(n) is null)
            .Order(StringComparer.Ordinal)
            .Select(n => ProbeVolume(pool, n!, Path.Combine(definition.Path, n!), users))
            .OfType<StorageVolumeInfo>()
            .ToList();
    }

    public StorageVolumeInfo GetVolume(string pool, string volume)
    {
        var path = VolumePath(pool, volume);
        return ProbeVolume(pool, volume, path, UsersByPath()) ?? throw new StorageVolumeNotFoundException(pool, volume, path);
    }

    /// <summary>
    /// Creates a raw or qcow2 volume (sparse) through <see cref="StorageDiskImageCreator"/>, the code New-KvmDiskImage
    /// uses. <paramref name="format"/> null: qcow2 for a *.qcow2 name or with a backing volume, raw otherwise.
    /// <paramref name="backingVolume"/>: a volume of the same pool, stored in the image by its bare name (so the pair
    /// can move with the pool); then <paramref name="sizeBytes"/> may be null (the backing volume's size).
    /// </summary>
    public StorageVolumeInfo CreateVolume(string pool, string volume, long? sizeBytes, DiskFormat? format = null, string? backingVolume = null)
    {
        var definition = Definition(pool);
        StoragePoolNames.ValidateVolume(pool, volume);
        var actualFormat = format ?? DiskDefinition.DefaultFormat(volume, backingVolume);
        if (backingVolume is not null)
        {
            StoragePoolNames.ValidateVolume(pool, backingVolume, "BackingVolume");
            if (actualFormat != DiskFormat.Qcow2)
                throw new StorageVolumeSettingException(pool, volume, "BackingVolume", "needs the qcow2 format (a raw image has no backing file)");
            if (backingVolume == volume)
                throw new StorageVolumeSettingException(pool, volume, "BackingVolume", "cannot be the volume itself");
        }
        if (sizeBytes is null && backingVolume is null)
            throw new StorageVolumeSettingException(pool, volume, "SizeBytes", "is required (or give a backing volume to take its size)");
        if (sizeBytes is { } size && (size <= 0 || size % DiskDefinition.SectorBytes != 0))
            throw new StorageVolumeSettingException(pool, volume, "SizeBytes", $"must be a positive multiple of {DiskDefinition.SectorBytes} (got {size})");
        if (!Directory.Exists(definition.Path))
            throw new StoragePoolSettingException(pool, "Path", definition.Path, "does not exist (the pool's folder is missing; kvmps autostart or applying the manifest re-creates it)");
        var path = Path.Combine(definition.Path, volume);
        if (backingVolume is not null && !File.Exists(Path.Combine(definition.Path, backingVolume)))
            throw new StorageVolumeSettingException(pool, volume, "BackingVolume", $"'{backingVolume}' does not exist in pool '{pool}'");
        if (FileSystemSpace.Of(definition.Path).AvailableBytes == 0)
            throw new StoragePoolSettingException(pool, "Path", definition.Path, "is on a full file system (no space available for a new volume)");
        using (Store.Lock())
        {
            if (FileOwnership.Of(path) is not null)
                throw new StorageVolumeAlreadyExistsException(pool, volume, path);
            try
            {
                StorageDiskImageCreator.Create(path, actualFormat, sizeBytes ?? 0, backingVolume);
            }
            catch
            {
                TryDelete(path);
                throw;
            }
        }
        return GetVolume(pool, volume);
    }

    /// <summary>Deletes a volume's file; refused while a VM definition uses it or another volume is backed by it (both named).</summary>
    public void RemoveVolume(string pool, string volume)
    {
        var path = VolumePath(pool, volume);
        using (Store.Lock())
        {
            var status = FileOwnership.Of(path);
            if (status is not { IsRegularFile: true })
                throw new StorageVolumeNotFoundException(pool, volume, path);
            var real = ResolvedPath.Of(path);
            var vms = UsersByPath().TryGetValue(real, out var list) ? list : [];
            var backed = ListVolumes(pool).Where(v => v.BackingVolume is { } b && ResolvedPath.Of(Path.Combine(Definition(pool).Path, b)) == real).Select(v => v.Name).ToList();
            if (vms.Count > 0 || backed.Count > 0)
                throw new StorageVolumeInUseException(pool, volume, vms, backed);
            File.Delete(path);
        }
    }

    // ---- helpers -----------------------------------------------------------------------------------

    private void EnsureDefaultFolder()
    {
        var folder = StoragePoolRegistry.DefaultPoolPath(Store.Root);
        if (!Directory.Exists(folder))
            StoreConfinement.CreateDirectory(folder);
    }

    /// <summary>Checks a pool folder (see <see cref="Create"/>); returns its full path.</summary>
    private string CheckPath(string name, string path, bool createPath, out bool created)
    {
        created = false;
        if (string.IsNullOrWhiteSpace(path) || !Path.IsPathRooted(path) || path.Contains('\0'))
            throw new StoragePoolSettingException(name, "Path", path, "must be an absolute folder path");
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        var status = FileOwnership.Of(full);
        if (status is null)
        {
            if (!createPath)
                throw new StoragePoolSettingException(name, "Path", full, "does not exist (create the folder first, or ask for it to be created: -CreatePath / --create-path)");
            try
            {
                StoreConfinement.CreateDirectory(full);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new StoragePoolSettingException(name, "Path", full, $"cannot be created: {e.Message}", e);
            }
            created = true;
        }
        else if (!Directory.Exists(full))
            throw new StoragePoolSettingException(name, "Path", full, "is a file, not a folder");
        try
        {
            var real = ResolvedPath.Of(full);
            var store = ResolvedPath.Of(Store.Root);
            if (real == store || real == ResolvedPath.Of(Store.VmsDirectory) || real.StartsWith(ResolvedPath.Of(Store.VmsDirectory) + "/", StringComparison.Ordinal)
                || real == ResolvedPath.Of(StoragePoolRegistry.PoolsDirectory(Store.Root)))
                throw new StoragePoolSettingException(name, "Path", full, $"is the store's own folder ('{store}', its vms/ or pools/): give a folder of its own");
            if (real == "/")
                throw new StoragePoolSettingException(name, "Path", full, "is the root folder: give a folder of its own");
            foreach (var other in StoragePoolRegistry.List(Store.Root))
                if (other.Name != name && ResolvedPath.Of(other.Path) == real)
                    throw new StoragePoolAlreadyExistsException(name, $"folder '{full}' is already pool '{other.Name}'");
            try
            {
                StoreConfinement.Judge(full, FileOwnership.Of(real)!.Value, FileOwnership.EffectiveUid);
            }
            catch (StoreConfinementException e)
            {
                throw new StoragePoolSettingException(name, "Path", full, $"is refused: {e.Reason} (fix: {e.Fix})", e);
            }
            try
            {
                using var entries = Directory.EnumerateFileSystemEntries(full).GetEnumerator();
                entries.MoveNext();
                var probe = Path.Combine(full, ".kvmps-probe-" + Guid.NewGuid().ToString("N"));
                NoFollowFile.CreateNew(probe, StoreConfinement.FileMode).Dispose();
                File.Delete(probe);
            }
            catch (Exception e) when (e is UnauthorizedAccessException or IOException)
            {
                throw new StoragePoolSettingException(name, "Path", full, $"is not readable and writable by KvmPS: {e.Message}", e);
            }
            if (FileSystemSpace.Of(full).AvailableBytes == 0)
                throw new StoragePoolSettingException(name, "Path", full, "is on a full file system (no space available)");
            return full;
        }
        catch
        {
            if (created)
                TryDeleteEmptyFolder(full);
            throw;
        }
    }

    private StoragePoolInfo ToInfo(StoragePoolDefinition pool)
    {
        var status = FileOwnership.Of(pool.Path);
        if (status is null || !Directory.Exists(pool.Path))
            return new StoragePoolInfo(pool.Name, pool.Path, pool.Autostart, pool.IsDefault, StoragePoolState.Missing, 0, 0, 0, 0);
        int count;
        try
        {
            count = Directory.EnumerateFiles(pool.Path).Count(f => StoragePoolNames.VolumeNameProblem(Path.GetFileName(f)) is null);
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            return new StoragePoolInfo(pool.Name, pool.Path, pool.Autostart, pool.IsDefault, StoragePoolState.Inaccessible, 0, 0, 0, 0);
        }
        var space = FileSystemSpace.Of(pool.Path);
        return new StoragePoolInfo(pool.Name, pool.Path, pool.Autostart, pool.IsDefault, StoragePoolState.Active,
            (long)space.CapacityBytes, (long)space.UsedBytes, (long)space.AvailableBytes, count);
    }

    private static StorageVolumeInfo? ProbeVolume(string pool, string name, string path, IReadOnlyDictionary<string, List<string>> users)
    {
        if (FileOwnership.Of(path) is not { IsRegularFile: true })
            return null;
        var header = VolumeHeader.Read(path);
        var used = users.TryGetValue(ResolvedPath.Of(path), out var list) ? list : [];
        return new StorageVolumeInfo(pool, name, path, header.Format, header.CapacityBytes, FileSystemSpace.AllocatedBytes(path) ?? 0, header.BackingFile, used);
    }

    /// <summary>Resolved image path → VMs whose definitions use it as a disk or a disk's backing image.</summary>
    public IReadOnlyDictionary<string, List<string>> UsersByPath()
    {
        var result = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var (vm, _, resolved) in DiskUses())
        {
            if (resolved is null)
                continue;
            if (!result.TryGetValue(resolved, out var list))
                result[resolved] = list = [];
            if (!list.Contains(vm))
                list.Add(vm);
        }
        return result;
    }

    /// <summary>Every disk and backing path of every VM: (VM, path as written, resolved real path or null when it cannot be resolved).</summary>
    private IEnumerable<(string Vm, string Disk, string? Resolved)> DiskUses()
    {
        foreach (var name in Store.ListNames())
        {
            VmDefinition? definition;
            try
            {
                definition = Store.TryGet(name);
            }
            catch (VmStoreException)
            {
                continue;
            }
            if (definition is null)
                continue;
            foreach (var disk in definition.Disks)
                foreach (var path in new[] { disk.Path, disk.BackingImagePath })
                    if (path is not null)
                        yield return (name, path, TryResolve(name, path));
        }
    }

    private string? TryResolve(string vm, string path)
    {
        try
        {
            return ResolvedPath.Of(Store.ResolveDiskPath(vm, path));
        }
        catch (Exception e) when (e is StoragePoolException or VmStoreException or IOException or ArgumentException)
        {
            return null;
        }
    }

    private static PoolVolumeReference? SafeParse(string path)
    {
        try
        {
            return PoolVolumeReference.Parse(path);
        }
        catch (StoragePoolException)
        {
            return null;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            if (FileOwnership.Of(path) is { IsRegularFile: true })
                File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    private static void TryDeleteEmptyFolder(string path)
    {
        try
        {
            Directory.Delete(path, recursive: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}
