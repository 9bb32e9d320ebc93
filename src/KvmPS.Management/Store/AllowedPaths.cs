using KvmPS.Interop;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Store;

/// <summary>
/// The folders a VM's disk, backing image, kernel, initrd and firmware files may come from: the store itself, plus the
/// folders the admin listed (none by default) in <c>$KVMPS_ALLOWED_PATHS</c> (colon-separated) and in the store's
/// <c>allowed-paths</c> file (one folder a line, <c>#</c> comments). Entries must be absolute; a relative one is refused.
/// A path is allowed when it, with every symlink resolved, lies inside one of them (so a link in an allowed folder
/// cannot lead out of it). Anything else is refused naming the path and the setting (<see cref="PathNotAllowedException"/>).
/// The storage pools' folders count as allowed too (docs/pools.md): defining a pool is how an admin adds a folder of
/// images. docs/confinement.md.
/// </summary>
public sealed class AllowedPaths
{
    public const string Variable = "KVMPS_ALLOWED_PATHS";
    public const string SettingFileName = "allowed-paths";

    /// <summary>The built-in firmware alias (FirmwareLoader.SeaBiosAlias): not a host path.</summary>
    public const string BuiltInFirmwareAlias = "seabios";

    private readonly string[] _resolved;

    private AllowedPaths(string storeRoot, IReadOnlyList<string> listed, string settingFile)
    {
        StoreRoot = storeRoot;
        Listed = listed;
        SettingFile = settingFile;
        _resolved = new[] { storeRoot }.Concat(listed).Select(ResolvedPath.Of).Distinct(StringComparer.Ordinal).ToArray();
    }

    public string StoreRoot { get; }

    /// <summary>The folders the admin listed (environment first, then the file), as written.</summary>
    public IReadOnlyList<string> Listed { get; }

    /// <summary>The store's setting file (<c>&lt;root&gt;/allowed-paths</c>).</summary>
    public string SettingFile { get; }

    /// <summary>Reads the setting for the store at <paramref name="storeRoot"/> from the environment and the store's file.</summary>
    public static AllowedPaths Load(string storeRoot, Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        var settingFile = Path.Combine(storeRoot, SettingFileName);
        var listed = new List<string>();
        foreach (var entry in (environment(Variable) ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            listed.Add(RequireAbsolute(entry, $"${Variable}"));
        string[] lines;
        try
        {
            lines = File.ReadAllLines(settingFile);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            lines = [];
        }
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            var hash = line.IndexOf('#');
            var entry = (hash >= 0 ? line[..hash] : line).Trim();
            if (entry.Length > 0)
                listed.Add(RequireAbsolute(entry, $"{settingFile} line {i + 1}"));
        }
        return new AllowedPaths(storeRoot, listed, settingFile);
    }

    /// <summary>Only the store (tests, and a store with no setting).</summary>
    public static AllowedPaths StoreOnly(string storeRoot) => new(storeRoot, [], Path.Combine(storeRoot, SettingFileName));

    /// <summary>The store and <paramref name="listed"/> (absolute folders; tests and callers with their own setting).</summary>
    public static AllowedPaths Of(string storeRoot, IEnumerable<string> listed) =>
        new(storeRoot, listed.Select(entry => RequireAbsolute(entry, "the allowed folders given")).ToList(), Path.Combine(storeRoot, SettingFileName));

    private static string RequireAbsolute(string entry, string where)
    {
        if (!Path.IsPathRooted(entry))
            throw new VmStoreException($"Allowed-paths setting {where}: '{entry}' is a relative path; list absolute folders only (a relative one would depend on the current folder)");
        return Path.TrimEndingDirectorySeparator(Path.GetFullPath(entry));
    }

    /// <summary>True when <paramref name="fullPath"/> (absolute), its links resolved, lies inside an allowed folder.</summary>
    public bool IsAllowed(string fullPath)
    {
        var real = ResolvedPath.Of(fullPath);
        return _resolved.Any(folder => IsInside(real, folder)) || PoolFolders().Any(folder => IsInside(real, folder));
    }

    /// <summary>The storage pools' folders (read at each check, so a pool made a moment ago counts), links resolved.</summary>
    private IEnumerable<string> PoolFolders()
    {
        try
        {
            return Pools.StoragePoolRegistry.List(StoreRoot).Select(pool => ResolvedPath.Of(pool.Path)).ToList();
        }
        catch (VmStoreException)
        {
            return [];
        }
    }

    /// <summary>Throws <see cref="PathNotAllowedException"/> unless <paramref name="fullPath"/> is allowed.</summary>
    public void Check(string vmName, string property, string fullPath)
    {
        if (!IsAllowed(fullPath))
            throw new PathNotAllowedException(vmName, property, fullPath, this);
    }

    /// <summary>
    /// Checks every host file of <paramref name="definition"/>: disks and backing images (resolved by
    /// <paramref name="resolveDiskPath"/>, relative ones inside the VM's disk folder), kernel, initrd and firmware.
    /// </summary>
    public void CheckDefinition(VmDefinition definition, Func<string, string> resolveDiskPath)
    {
        for (int i = 0; i < definition.Disks.Count; i++)
        {
            var disk = definition.Disks[i];
            Check(definition.Name, $"Disks[{i}].Path", resolveDiskPath(disk.Path));
            if (disk.BackingImagePath is not null)
                Check(definition.Name, $"Disks[{i}].BackingImagePath", resolveDiskPath(disk.BackingImagePath));
        }
        for (int i = 0; i < definition.DvdDrives.Count; i++)
            if (definition.DvdDrives[i].Path is { } iso)
                Check(definition.Name, $"DvdDrives[{i}].Path", resolveDiskPath(iso));
        if (definition.Display?.PasswordFile is { } passwordFile)
            Check(definition.Name, "Display.PasswordFile", Path.GetFullPath(passwordFile));
        switch (definition.Boot)
        {
            case DirectKernelBoot kernel:
                Check(definition.Name, "Boot.KernelPath", Path.GetFullPath(kernel.KernelPath));
                if (kernel.InitrdPath is not null)
                    Check(definition.Name, "Boot.InitrdPath", Path.GetFullPath(kernel.InitrdPath));
                break;
            case FirmwareBoot firmware when firmware.FirmwarePath != BuiltInFirmwareAlias:
                Check(definition.Name, "Boot.FirmwarePath", Path.GetFullPath(firmware.FirmwarePath));
                break;
        }
    }

    /// <summary>"the store '/var/lib/kvmps' and /srv/images (KVMPS_ALLOWED_PATHS, /var/lib/kvmps/allowed-paths)".</summary>
    public string Describe() =>
        $"the store '{StoreRoot}'" + (Listed.Count == 0 ? "" : " and " + string.Join(", ", Listed.Select(l => $"'{l}'"))) + PoolsText() +
        $" (setting: ${Variable} or {SettingFile}{(Listed.Count == 0 ? ", empty" : "")})";

    private string PoolsText()
    {
        var pools = PoolFolders().Where(folder => !IsInside(folder, ResolvedPath.Of(StoreRoot))).ToList();
        return pools.Count == 0 ? "" : ", the storage pools' folders " + string.Join(", ", pools.Select(p => $"'{p}'"));
    }

    private static bool IsInside(string path, string folder) =>
        folder == "/" || path == folder || path.StartsWith(folder + "/", StringComparison.Ordinal);
}

/// <summary>A disk, backing image, kernel, initrd or firmware path outside the store and every allowed folder.</summary>
public sealed class PathNotAllowedException : VmStoreException
{
    public PathNotAllowedException(string vmName, string property, string path, AllowedPaths allowed)
        : base($"VM '{vmName}': {property} '{path}' is outside {allowed.Describe()}. Move the file into the store, or have the admin add its folder to ${AllowedPaths.Variable} or {allowed.SettingFile}.")
    {
        VmName = vmName;
        Property = property;
        Path = path;
    }

    public string VmName { get; }
    public string Property { get; }
    public string Path { get; }
}
