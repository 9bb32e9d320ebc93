using System.Text;
using KvmPS.Interop;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Store;

/// <summary>
/// The on-disk VM store: <c>&lt;root&gt;/vms/&lt;name&gt;/</c> holds <c>vm.json</c>, <c>disks/</c>,
/// <c>serial.log</c>, <c>control.sock</c> and <c>vmm.pid</c>.
/// <para>
/// Every mutation runs under the store-wide <c>flock</c> on <c>&lt;root&gt;/.lock</c>, so concurrent
/// writers (threads or processes) serialize. Multi-step operations are crash-safe: a VM is assembled in
/// <c>vms/.tmp-&lt;name&gt;-&lt;id&gt;</c> and renamed into place, and deleted by first renaming it to
/// <c>vms/.delete-…</c>; so after a crash there is either no VM or a complete one, and
/// <see cref="Open"/> finishes or discards the leftovers. Reads take no lock: files only change by rename.
/// </para>
/// </summary>
public sealed class VmStore
{
    public const string DefinitionFileName = "vm.json";
    public const string DiskDirectoryName = "disks";
    public const string SerialLogFileName = "serial.log";
    public const string SocketFileName = "control.sock";
    /// <summary>The VNC server's socket of a VM with a display; shorter than <see cref="SocketFileName"/>, so it fits wherever that does.</summary>
    public const string VncSocketFileName = "vnc.sock";
    public const string PidFileName = "vmm.pid";
    public const string VmmConfigFileName = "vmm.json";
    public const string VmmLogFileName = "vmm.log";
    public const int DefaultLockTimeoutMs = 30_000;

    /// <summary>sockaddr_un.sun_path is 108 bytes including the terminating NUL.</summary>
    public const int MaximumSocketPathBytes = 107;

    private const string CreatingPrefix = ".tmp-";
    private const string DeletingPrefix = ".delete-";
    private const string DeletingKeepDisksPrefix = ".delete-keep-disks-";

    private VmStore(string root, int lockTimeoutMs, AllowedPaths allowedPaths)
    {
        Root = root;
        LockTimeoutMs = lockTimeoutMs;
        AllowedPaths = allowedPaths;
    }

    public string Root { get; }

    /// <summary>Where a VM's disks, kernel, initrd and firmware may come from (the store and the admin's list).</summary>
    public AllowedPaths AllowedPaths { get; }
    public int LockTimeoutMs { get; }
    public string VmsDirectory => Path.Combine(Root, "vms");
    public string LockPath => Path.Combine(Root, ".lock");
    public string RetainedDisksDirectory => Path.Combine(Root, "retained-disks");

    /// <summary>
    /// Test seam: called with a step name between the steps of multi-step operations
    /// ("create:definition-written", "create:moved-into-place", "delete:moved-aside", "delete:disks-retained"),
    /// so tests can kill the process there and check recovery.
    /// </summary>
    internal Action<string>? StepHook { get; set; }

    /// <summary>
    /// Opens (creating if needed, 0700) the store at <paramref name="root"/> or the default location, checks its owner and
    /// mode (<see cref="StoreConfinement"/>), and recovers from interrupted operations.
    /// </summary>
    /// <param name="allowedPaths">Null: the admin's setting (<see cref="AllowedPaths.Load"/>).</param>
    public static VmStore Open(string? root = null, int lockTimeoutMs = DefaultLockTimeoutMs, AllowedPaths? allowedPaths = null)
    {
        var fullRoot = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root ?? VmStoreLocation.ResolveDefaultRoot()));
        StoreConfinement.SecureRoot(fullRoot, Path.Combine(fullRoot, "vms"), FileOwnership.EffectiveUid);
        var store = new VmStore(fullRoot, lockTimeoutMs, allowedPaths ?? AllowedPaths.Load(fullRoot));
        using (store.Lock())
            store.RecoverInterruptedOperations();
        return store;
    }

    // ---- paths -------------------------------------------------------------------------------------

    /// <summary><c>&lt;root&gt;/vms/&lt;name&gt;</c>; rejects names that are invalid or would leave <c>vms/</c>.</summary>
    public string VmDirectory(string vmName)
    {
        ArgumentNullException.ThrowIfNull(vmName);
        var path = ContainedPath(VmsDirectory, vmName);
        VmName.Validate(vmName);
        return path;
    }

    public string DefinitionPath(string vmName) => Path.Combine(VmDirectory(vmName), DefinitionFileName);
    public string DiskDirectory(string vmName) => Path.Combine(VmDirectory(vmName), DiskDirectoryName);
    public string SerialLogPath(string vmName) => Path.Combine(VmDirectory(vmName), SerialLogFileName);
    public string PidPath(string vmName) => Path.Combine(VmDirectory(vmName), PidFileName);

    /// <summary>The kvmps-vmm JSON configuration generated from the definition at each start.</summary>
    public string VmmConfigPath(string vmName) => Path.Combine(VmDirectory(vmName), VmmConfigFileName);

    /// <summary>kvmps-vmm's stdout and stderr, appended across starts.</summary>
    public string VmmLogPath(string vmName) => Path.Combine(VmDirectory(vmName), VmmLogFileName);

    /// <summary>The flock file kvmps-vmm holds for its lifetime next to the control socket (<c>control.sock.lock</c>).</summary>
    public string SocketLockPath(string vmName) => SocketPath(vmName) + ".lock";

    /// <summary>The VMM control socket; fails early if the path is too long for a Unix socket address.</summary>
    public string SocketPath(string vmName)
    {
        var path = Path.Combine(VmDirectory(vmName), SocketFileName);
        if (Encoding.UTF8.GetByteCount(path) > MaximumSocketPathBytes)
            throw new VmStoreException($"Control socket path '{path}' is longer than the {MaximumSocketPathBytes} bytes a Unix socket address allows; use a shorter store root ({VmStoreLocation.HomeVariable})");
        return path;
    }

    /// <summary>
    /// Absolute path of a disk (or backing image) path from a definition: absolute paths are used as given,
    /// relative ones are resolved in the VM's disk directory and may not escape it, pool references
    /// (<c>pool://&lt;pool&gt;/&lt;volume&gt;</c>) in the pool's folder.
    /// </summary>
    public string ResolveDiskPath(string vmName, string diskPath)
    {
        ArgumentNullException.ThrowIfNull(diskPath);
        // A disk given by pool and volume (pool://default/web1.qcow2) resolves to the pool's folder of today (docs/pools.md).
        if (Pools.PoolVolumeReference.Parse(diskPath) is { } reference)
            return Pools.StoragePoolRegistry.ResolveVolumePath(Root, reference);
        return Path.IsPathRooted(diskPath) ? Path.GetFullPath(diskPath) : ContainedPath(DiskDirectory(vmName), diskPath);
    }

    /// <summary>Combines and normalizes; throws <see cref="StorePathEscapeException"/> unless the result is strictly inside <paramref name="directory"/>.</summary>
    private static string ContainedPath(string directory, string relative)
    {
        var combined = Path.GetFullPath(Path.Combine(directory, relative));
        var prefix = Path.TrimEndingDirectorySeparator(directory) + Path.DirectorySeparatorChar;
        if (Path.IsPathRooted(relative) || !combined.StartsWith(prefix, StringComparison.Ordinal) || combined.Length == prefix.Length)
            throw new StorePathEscapeException(relative, directory);
        return combined;
    }

    // ---- reads -------------------------------------------------------------------------------------

    public bool Exists(string vmName) => File.Exists(DefinitionPath(vmName));

    public VmDefinition Get(string vmName) =>
        TryGet(vmName) ?? throw new VmNotFoundException(vmName, Root);

    public VmDefinition? TryGet(string vmName)
    {
        var path = DefinitionPath(vmName);
        byte[] json;
        try
        {
            json = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        VmDefinition definition;
        try
        {
            definition = VmDefinitionJson.Deserialize(json);
        }
        catch (VmDefinitionException e)
        {
            throw new VmStoreCorruptException(path, e.Message, e);
        }
        if (!string.Equals(definition.Name, vmName, StringComparison.Ordinal))
            throw new VmStoreCorruptException(path, $"it defines VM '{definition.Name}' but is stored as '{vmName}'");
        return definition;
    }

    /// <summary>Names of all VMs, ordinal order. Folders being created or deleted are not VMs yet/anymore.</summary>
    public IReadOnlyList<string> ListNames() =>
        Directory.EnumerateDirectories(VmsDirectory)
            .Select(Path.GetFileName)
            .Where(name => VmName.IsValid(name) && File.Exists(Path.Combine(VmsDirectory, name!, DefinitionFileName)))
            .Select(name => name!)
            .Order(StringComparer.Ordinal)
            .ToList();

    /// <summary>All definitions; throws <see cref="VmStoreCorruptException"/> if any vm.json is unreadable.</summary>
    public IReadOnlyList<VmDefinition> List() =>
        ListNames().Select(TryGet).OfType<VmDefinition>().ToList();

    // ---- writes ------------------------------------------------------------------------------------

    /// <summary>Creates the VM folder, its disk directory and vm.json, atomically as a whole.</summary>
    public VmDefinition Create(VmDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        definition.Validate();
        var vmDirectory = VmDirectory(definition.Name);
        CheckPaths(definition);
        var json = VmDefinitionJson.SerializeToUtf8Bytes(definition);

        using var _ = Lock();
        if (Directory.Exists(vmDirectory))
            throw new VmAlreadyExistsException(definition.Name, vmDirectory);

        var staging = Path.Combine(VmsDirectory, $"{CreatingPrefix}{definition.Name}-{Guid.NewGuid():N}");
        var movedIntoPlace = false;
        try
        {
            StoreConfinement.CreateDirectory(staging);
            StoreConfinement.CreateDirectory(Path.Combine(staging, DiskDirectoryName));
            DurableFile.WriteAtomically(Path.Combine(staging, DefinitionFileName), json);
            DurableFile.FsyncDirectory(staging);
            StepHook?.Invoke("create:definition-written");
            Directory.Move(staging, vmDirectory);
            movedIntoPlace = true;
            DurableFile.FsyncDirectory(VmsDirectory);
            StepHook?.Invoke("create:moved-into-place");
        }
        finally
        {
            if (!movedIntoPlace && Directory.Exists(staging))
                Directory.Delete(staging, recursive: true);
        }
        return definition;
    }

    /// <summary>Replaces the whole definition of an existing VM (renaming is not an update).</summary>
    public VmDefinition Update(VmDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        definition.Validate();
        var path = DefinitionPath(definition.Name);
        CheckPaths(definition);
        var json = VmDefinitionJson.SerializeToUtf8Bytes(definition);

        using var _ = Lock();
        return UpdateWhileLocked(definition, path, json);
    }

    /// <summary><see cref="Update"/> for a caller that already holds <see cref="Lock"/> (the lock is not re-entrant).</summary>
    internal VmDefinition UpdateWhileLocked(VmDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        definition.Validate();
        CheckPaths(definition);
        return UpdateWhileLocked(definition, DefinitionPath(definition.Name), VmDefinitionJson.SerializeToUtf8Bytes(definition));
    }

    private VmDefinition UpdateWhileLocked(VmDefinition definition, string path, byte[] json)
    {
        if (!File.Exists(path))
            throw new VmNotFoundException(definition.Name, Root);
        DurableFile.WriteAtomically(path, json);
        return definition;
    }

    /// <summary>
    /// Deletes the VM folder. With <see cref="DiskRetention.Keep"/> its disk directory is first moved to
    /// <see cref="RetainedDisksDirectory"/>. Disk files outside the store are never deleted.
    /// </summary>
    public VmDeleteResult Delete(string vmName, DiskRetention disks)
    {
        VmDirectory(vmName);
        using var _ = Lock();
        return DeleteWhileLocked(vmName, disks);
    }

    /// <summary><see cref="Delete"/> for a caller that already holds <see cref="Lock"/> (the lock is not re-entrant).</summary>
    internal VmDeleteResult DeleteWhileLocked(string vmName, DiskRetention disks)
    {
        var vmDirectory = VmDirectory(vmName);
        if (!File.Exists(Path.Combine(vmDirectory, DefinitionFileName)))
            throw new VmNotFoundException(vmName, Root);

        // The intent (keep disks or not) is recorded in the name so recovery can finish the job faithfully.
        var prefix = disks == DiskRetention.Keep ? DeletingKeepDisksPrefix : DeletingPrefix;
        var doomed = Path.Combine(VmsDirectory, $"{prefix}{vmName}-{Guid.NewGuid():N}");
        Directory.Move(vmDirectory, doomed);
        DurableFile.FsyncDirectory(VmsDirectory);
        StepHook?.Invoke("delete:moved-aside");
        return FinishDelete(doomed);
    }

    /// <summary>
    /// A new, empty staging folder for assembling a VM (an import) in <c>vms/.tmp-…</c>: recovery discards it if the
    /// process dies before <see cref="MoveIntoPlaceWhileLocked"/>. Caller holds <see cref="Lock"/>.
    /// </summary>
    internal string CreateStagingWhileLocked(string vmName)
    {
        VmDirectory(vmName);
        var staging = Path.Combine(VmsDirectory, $"{CreatingPrefix}{vmName}-{Guid.NewGuid():N}");
        StoreConfinement.CreateDirectory(staging);
        return staging;
    }

    /// <summary>Renames an assembled staging folder (holding a valid vm.json for <paramref name="vmName"/>) into place. Caller holds <see cref="Lock"/>.</summary>
    internal void MoveIntoPlaceWhileLocked(string staging, string vmName)
    {
        var vmDirectory = VmDirectory(vmName);
        if (Directory.Exists(vmDirectory))
            throw new VmAlreadyExistsException(vmName, vmDirectory);
        StoreConfinement.RestrictTree(staging); // an import's copied disks and files: 0700/0600 like the rest of the store
        DurableFile.FsyncDirectory(staging);
        Directory.Move(staging, vmDirectory);
        DurableFile.FsyncDirectory(VmsDirectory);
    }

    // ---- recovery ----------------------------------------------------------------------------------

    /// <summary>Discards half-created VMs, finishes half-deleted ones and drops stale temp files. Caller holds the lock.</summary>
    private void RecoverInterruptedOperations()
    {
        foreach (var directory in Directory.EnumerateDirectories(VmsDirectory).ToList())
        {
            var name = Path.GetFileName(directory);
            if (name.StartsWith(CreatingPrefix, StringComparison.Ordinal))
                Directory.Delete(directory, recursive: true);
            else if (name.StartsWith(DeletingPrefix, StringComparison.Ordinal))
                FinishDelete(directory);
            else
                foreach (var temp in Directory.EnumerateFiles(directory, DefinitionFileName + DurableFile.TempMarker + "*").ToList())
                    File.Delete(temp);
        }
    }

    private VmDeleteResult FinishDelete(string doomed)
    {
        var folder = Path.GetFileName(doomed);
        var keepDisks = folder.StartsWith(DeletingKeepDisksPrefix, StringComparison.Ordinal);
        // "<prefix><name>-<32 hex id>"
        var nameAndId = folder[(keepDisks ? DeletingKeepDisksPrefix : DeletingPrefix).Length..];
        var vmName = nameAndId.Length > 33 ? nameAndId[..^33] : nameAndId;

        string? retained = null;
        var diskDirectory = Path.Combine(doomed, DiskDirectoryName);
        if (keepDisks && Directory.Exists(diskDirectory))
        {
            StoreConfinement.CreateDirectory(RetainedDisksDirectory);
            retained = Path.Combine(RetainedDisksDirectory, nameAndId);
            Directory.Move(diskDirectory, retained);
            DurableFile.FsyncDirectory(RetainedDisksDirectory);
            DurableFile.FsyncDirectory(doomed);
            StepHook?.Invoke("delete:disks-retained");
        }
        Directory.Delete(doomed, recursive: true);
        DurableFile.FsyncDirectory(VmsDirectory);
        return new VmDeleteResult(vmName, retained);
    }

    /// <summary>
    /// Refuses a definition whose relative disk paths leave its disk folder (<see cref="StorePathEscapeException"/>) or
    /// whose disk, backing image, kernel, initrd or firmware lies outside the store and every allowed folder
    /// (<see cref="PathNotAllowedException"/>). Run on every write of a definition, at every start and in a reconcile plan.
    /// </summary>
    public void CheckPaths(VmDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        AllowedPaths.CheckDefinition(definition, path => ResolveDiskPath(definition.Name, path));
        // An ISO is only ever read: a missing or wrong one is refused now rather than as a VMM start failure.
        for (int i = 0; i < definition.DvdDrives.Count; i++)
            if (definition.DvdDrives[i].Path is { } iso)
                IsoImage.Check(definition.Name, $"DvdDrives[{i}].Path", ResolveDiskPath(definition.Name, iso));
    }

    /// <summary>The VNC server's Unix socket of a VM with a display (<c>vnc.sock</c> in its folder).</summary>
    public string VncSocketPath(string vmName) => Path.Combine(VmDirectory(vmName), VncSocketFileName);

    internal IDisposable Lock() => StoreLock.Acquire(LockPath, LockTimeoutMs);
}
