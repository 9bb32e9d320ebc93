using System.Collections;
using System.Collections.Specialized;
using KvmPS.Management.Definitions;
using KvmPS.Management.Manifests;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// Reads desired-state manifests (docs/en-US/about_KvmPS_Manifests.md) into a <see cref="DesiredHostState"/>.
/// <code>
/// @{
///     Defaults        = @{ MemoryStartupBytes = 256MB; VcpuCount = 1 }        # optional; merged under every VM
///     VirtualMachines = @(
///         @{ Name = 'web1'; Ensure = 'Present'; State = 'Running'; VcpuCount = 2 }
///         @{ Name = 'old'; Ensure = 'Absent' }
///     )
/// }
/// </code>
/// A file whose top level has a <c>Name</c> key is a single VM entry. Per-VM keys are the
/// <see cref="VmDefinitionReader"/> schema plus <c>Ensure</c>, <c>State</c> and <c>RestartIfNeeded</c>.
/// Every problem is a <see cref="DesiredStateException"/> naming file:line:column, the VM and the key; the
/// first one found is thrown, and since reading never touches the host, nothing has changed.
/// </summary>
public static class DesiredStateReader
{
    public static readonly IReadOnlyList<string> ManifestKeys = new[] { "Defaults", "VirtualMachines", "StoragePools", "Networks", DesiredSriovReader.Key };
    public static readonly IReadOnlyList<string> DesiredStateKeys = new[] { "Ensure", "State", "RestartIfNeeded" };

    /// <summary>Keys of a VM entry: the definition schema plus Ensure, State, RestartIfNeeded.</summary>
    public static readonly IReadOnlyList<string> VmKeys = VmDefinitionReader.TopLevelKeys.Concat(DesiredStateKeys).ToArray();

    /// <summary>Keys <c>Defaults</c> may hold: every VM key but Name and Ensure.</summary>
    public static readonly IReadOnlyList<string> DefaultsKeys = VmKeys.Where(k => k is not ("Name" or "Ensure")).ToArray();

    /// <summary>Reads and merges manifest files; a VM may be defined in only one of them.</summary>
    public static DesiredHostState ReadFiles(IEnumerable<string> paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var files = new List<string>();
        var vms = new List<DesiredVm>();
        var pools = new List<DesiredStoragePool>();
        var networks = new List<DesiredNetwork>();
        var sriov = new List<DesiredSriovVfCount>();
        var seen = new Dictionary<string, DesiredVm>(StringComparer.Ordinal);
        foreach (var path in paths)
        {
            var fullPath = Path.GetFullPath(path);
            var root = ReadRoot(path, fullPath);
            files.Add(fullPath);
            foreach (var vm in ReadManifest(root, Path.GetDirectoryName(fullPath)!))
                Add(vm, vms, seen);
            DesiredStoragePoolReader.Read(root, Path.GetDirectoryName(fullPath)!, pools);
            DesiredNetworkReader.Read(root, networks);
            DesiredSriovReader.Read(root, sriov);
        }
        if (files.Count == 0)
            throw new ArgumentException("At least one manifest file is needed.", nameof(paths));
        return new DesiredHostState(files, vms) { StoragePools = pools, Networks = networks, HostSriov = sriov };
    }

    /// <summary>Parses manifest text (tests, stdin). Relative boot paths resolve against <paramref name="baseDirectory"/> (default: the current directory).</summary>
    /// <param name="hostNameAllowed">
    /// Accept a top-level <c>HostName</c> (docs/remote.md): true where the manifest came from another host's
    /// <c>kvmps apply</c>, which sent it here because it names this host (<c>kvmps apply -</c>).
    /// </param>
    public static DesiredHostState Parse(string text, string fileName = "<text>", string? baseDirectory = null, bool hostNameAllowed = false)
    {
        PsdHashtable root;
        try
        {
            root = PsdReader.ParseDataFile(text, fileName);
        }
        catch (ManifestParseException e)
        {
            throw new DesiredStateException(e.Position, null, null, e.Reason, e);
        }
        var vms = new List<DesiredVm>();
        var seen = new Dictionary<string, DesiredVm>(StringComparer.Ordinal);
        foreach (var vm in ReadManifest(root, baseDirectory ?? Directory.GetCurrentDirectory(), hostNameAllowed))
            Add(vm, vms, seen);
        var pools = new List<DesiredStoragePool>();
        DesiredStoragePoolReader.Read(root, baseDirectory ?? Directory.GetCurrentDirectory(), pools);
        var networks = new List<DesiredNetwork>();
        DesiredNetworkReader.Read(root, networks);
        var sriov = new List<DesiredSriovVfCount>();
        DesiredSriovReader.Read(root, sriov);
        return new DesiredHostState(new[] { fileName }, vms) { StoragePools = pools, Networks = networks, HostSriov = sriov };
    }

    /// <summary>
    /// One VM entry from plain values (a DSC instance, a hashtable from PowerShell): same keys and rules, positions
    /// name only <paramref name="source"/>. Relative boot paths resolve against the current directory.
    /// </summary>
    public static DesiredVm FromDictionary(IDictionary values, string source = "<input>")
    {
        ArgumentNullException.ThrowIfNull(values);
        var table = ToPsd(values, new SourcePosition(source, 0, 0));
        return ReadVm(table, null, "", Directory.GetCurrentDirectory());
    }

    // ---- files ---------------------------------------------------------------------------------------

    private static PsdHashtable ReadRoot(string path, string fullPath)
    {
        var here = new SourcePosition(path, 0, 0);
        if (Directory.Exists(fullPath))
            throw new DesiredStateException(here, null, null, "is a directory, not a manifest file");
        if (!File.Exists(fullPath))
            throw new DesiredStateException(here, null, null, "the manifest file does not exist");
        string text;
        try
        {
            text = File.ReadAllText(fullPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DesiredStateException(here, null, null, "cannot read the manifest: " + e.Message, e);
        }
        try
        {
            return PsdReader.ParseDataFile(text, path);
        }
        catch (ManifestParseException e)
        {
            throw new DesiredStateException(e.Position, null, null, e.Reason, e);
        }
    }

    private static void Add(DesiredVm vm, List<DesiredVm> vms, Dictionary<string, DesiredVm> seen)
    {
        if (seen.TryGetValue(vm.Name, out var first))
            throw new DesiredStateException(vm.Position, vm.Name, "Name", $"the VM is defined twice (first at {first.Position})");
        seen.Add(vm.Name, vm);
        vms.Add(vm);
    }

    /// <summary>The top-level key naming the host a manifest is for (<c>HostName = 'h2'</c>; docs/remote.md).</summary>
    public const string HostNameKey = "HostName";

    private static IEnumerable<DesiredVm> ReadManifest(PsdHashtable root, string baseDirectory, bool hostNameAllowed = false)
    {
        // Single-VM form: the file is one VM entry.
        if (root.ContainsKey("Name") && !root.ContainsKey("VirtualMachines"))
        {
            yield return ReadVm(root, null, "", baseDirectory);
            yield break;
        }
        foreach (var entry in root.Entries)
            if (string.Equals(entry.Key, HostNameKey, StringComparison.OrdinalIgnoreCase))
            {
                // Applied here, a manifest for another host would change the wrong host: only kvmps apply routes it.
                if (!hostNameAllowed)
                    throw new DesiredStateException(entry.KeyPosition, null, HostNameKey,
                        "names the host this manifest is for; 'kvmps apply|plan|test|get FILE' runs it on that host through ssh (docs/remote.md), this command reads manifests for this host only");
                if (entry.Value is not PsdString)
                    throw new DesiredStateException(entry.Value.Position, null, HostNameKey, $"must be a string ('host' or 'user@host'), not {Describe(entry.Value)}");
            }
            else if (!ManifestKeys.Contains(entry.Key, StringComparer.OrdinalIgnoreCase))
                throw new DesiredStateException(entry.KeyPosition, null, entry.Key,
                    $"unknown key '{entry.Key}' (a manifest has: {string.Join(", ", ManifestKeys)}; a single-VM manifest has Name and the VM keys)");

        PsdHashtable? defaults = null;
        if (root.TryGetEntry("Defaults", out var defaultsEntry))
        {
            defaults = defaultsEntry.Value as PsdHashtable
                ?? throw new DesiredStateException(defaultsEntry.Value.Position, null, "Defaults", $"must be a hashtable, not {Describe(defaultsEntry.Value)}");
            foreach (var entry in defaults.Entries)
            {
                if (entry.Key.Equals("Name", StringComparison.OrdinalIgnoreCase) || entry.Key.Equals("Ensure", StringComparison.OrdinalIgnoreCase))
                    throw new DesiredStateException(entry.KeyPosition, null, "Defaults." + entry.Key,
                        $"cannot have a default ({(entry.Key.Equals("Name", StringComparison.OrdinalIgnoreCase) ? "every VM needs its own name" : "give Ensure per VM")})");
                if (!DefaultsKeys.Contains(entry.Key, StringComparer.OrdinalIgnoreCase))
                    throw new DesiredStateException(entry.KeyPosition, null, "Defaults." + entry.Key, $"unknown key '{entry.Key}' (allowed: {string.Join(", ", DefaultsKeys)})");
            }
            // Checked here as well as per VM, so a bad default is reported even when no VM uses it.
            ReadState(defaults, null, "Defaults.");
            ReadRestartIfNeeded(defaults, null, "Defaults.");
        }

        if (!root.TryGetEntry("VirtualMachines", out var vmsEntry) && (root.ContainsKey("StoragePools") || root.ContainsKey("Networks") || root.ContainsKey(DesiredSriovReader.Key)))
            yield break; // a manifest of pools, networks or host SR-IOV only
        if (vmsEntry is null)
            throw new DesiredStateException(root.Position, null, "VirtualMachines", "is required (a list of VM entries: @( @{ Name = 'vm1'; ... } ))");
        IReadOnlyList<PsdValue> items = vmsEntry.Value switch
        {
            PsdArray array => array.Items,
            PsdHashtable single => new PsdValue[] { single },
            PsdNull => Array.Empty<PsdValue>(),
            var other => throw new DesiredStateException(other.Position, null, "VirtualMachines", $"must be a list of hashtables, not {Describe(other)}"),
        };
        for (var i = 0; i < items.Count; i++)
        {
            if (items[i] is not PsdHashtable table)
                throw new DesiredStateException(items[i].Position, null, $"VirtualMachines[{i}]", $"must be a hashtable (a VM entry), not {Describe(items[i])}");
            yield return ReadVm(table, defaults, $"VirtualMachines[{i}]", baseDirectory);
        }
    }

    // ---- one VM --------------------------------------------------------------------------------------

    private static DesiredVm ReadVm(PsdHashtable table, PsdHashtable? defaults, string where, string baseDirectory)
    {
        // The name first: every later message names the VM.
        if (!table.TryGetEntry("Name", out var nameEntry) || nameEntry.Value is PsdNull)
            throw new DesiredStateException(table.Position, null, Join(where, "Name"), "is required");
        if (nameEntry.Value is not PsdString nameValue)
            throw new DesiredStateException(nameEntry.Value.Position, null, Join(where, "Name"), $"must be a string, not {Describe(nameEntry.Value)}");
        var name = nameValue.Value;
        if (!VmName.IsValid(name))
            throw new DesiredStateException(nameValue.Position, name, "Name",
                "must be 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or digit");

        foreach (var entry in table.Entries)
            if (!VmKeys.Contains(entry.Key, StringComparer.OrdinalIgnoreCase))
                throw new DesiredStateException(entry.KeyPosition, name, entry.Key, $"unknown key '{entry.Key}' (allowed: {string.Join(", ", VmKeys)})");

        var ensure = VmEnsure.Present;
        if (table.TryGetEntry("Ensure", out var ensureEntry))
            ensure = ParseEnum<VmEnsure>(ensureEntry.Value, name, "Ensure");

        if (ensure == VmEnsure.Absent)
        {
            // Nothing else matters for a VM that must not exist; a power state for it is a contradiction.
            if (table.TryGetEntry("State", out var stateEntry) && stateEntry.Value is not PsdNull)
                throw new DesiredStateException(stateEntry.KeyPosition, name, "State", "has no meaning when Ensure = 'Absent' (remove State, or set Ensure = 'Present')");
            return new DesiredVm { Name = name, Ensure = VmEnsure.Absent, Position = table.Position };
        }

        var state = ReadState(table, name, "") ?? (defaults is null ? null : ReadState(defaults, name, "Defaults."));
        var restart = ReadRestartIfNeeded(table, name, "") ?? (defaults is null ? null : ReadRestartIfNeeded(defaults, name, "Defaults.")) ?? false;

        // Defaults under the entry: a key of the entry replaces the default entirely (no deep merge).
        var merged = new OrderedDictionary(StringComparer.OrdinalIgnoreCase);
        var stated = new List<string>();
        foreach (var layer in new[] { defaults, table })
        {
            if (layer is null)
                continue;
            foreach (var entry in layer.Entries)
            {
                if (DesiredStateKeys.Contains(entry.Key, StringComparer.OrdinalIgnoreCase))
                    continue;
                merged[entry.Key] = entry.Value.ToPlainObject();
                stated.Add(entry.Key);
            }
        }
        ResolveBootPaths(merged, baseDirectory);

        var positions = new ManifestPositionMap(table, defaults, table);
        VmDefinition definition;
        try
        {
            definition = VmDefinitionReader.FromDictionary(merged);
        }
        catch (VmDefinitionException e)
        {
            var atKey = e.Reason.StartsWith("unknown key", StringComparison.Ordinal) || e.Reason.StartsWith("is given twice", StringComparison.Ordinal);
            throw new DesiredStateException(positions.Locate(e.Property, atKey), name, e.Property, e.Reason, e);
        }
        return new DesiredVm
        {
            Name = name,
            Ensure = VmEnsure.Present,
            State = state,
            RestartIfNeeded = restart,
            Definition = definition,
            ManagedProperties = DefinitionOverlay.ManagedFromKeys(stated),
            Position = table.Position,
        };
    }

    private static DesiredPowerState? ReadState(PsdHashtable table, string? vmName, string prefix) =>
        table.TryGetEntry("State", out var entry) && entry.Value is not PsdNull
            ? ParseEnum<DesiredPowerState>(entry.Value, vmName, prefix + "State")
            : null;

    private static bool? ReadRestartIfNeeded(PsdHashtable table, string? vmName, string prefix)
    {
        if (!table.TryGetEntry("RestartIfNeeded", out var entry) || entry.Value is PsdNull)
            return null;
        return entry.Value is PsdBoolean b
            ? b.Value
            : throw new DesiredStateException(entry.Value.Position, vmName, prefix + "RestartIfNeeded", $"must be $true or $false, not {Describe(entry.Value)}");
    }

    private static T ParseEnum<T>(PsdValue value, string? vmName, string property) where T : struct, Enum
    {
        var allowed = string.Join(", ", Enum.GetNames<T>().Select(n => $"'{n}'"));
        if (value is not PsdString text)
            throw new DesiredStateException(value.Position, vmName, property, $"must be one of {allowed}, not {Describe(value)}");
        foreach (var candidate in Enum.GetValues<T>())
            if (candidate.ToString().Equals(text.Value, StringComparison.OrdinalIgnoreCase))
                return candidate;
        throw new DesiredStateException(value.Position, vmName, property, $"'{text.Value}' is not one of {allowed}");
    }

    /// <summary>Kernel, initrd and firmware paths are relative to the manifest's folder (disk paths are the store's business).</summary>
    private static void ResolveBootPaths(OrderedDictionary merged, string baseDirectory)
    {
        if (merged["Boot"] is not IDictionary boot)
            return;
        var resolved = new OrderedDictionary(StringComparer.OrdinalIgnoreCase);
        foreach (DictionaryEntry entry in boot)
        {
            var key = entry.Key as string;
            // A path with a NUL is left as written: the definition's own check refuses it with its position
            // (Path.GetFullPath would throw an ArgumentException; found by fuzzing, docs/fuzzing.md).
            resolved[entry.Key] = key is not null && entry.Value is string path && path.Length > 0 && !path.Contains('\0') && !Path.IsPathRooted(path)
                                  && (key.Equals("KernelPath", StringComparison.OrdinalIgnoreCase)
                                      || key.Equals("InitrdPath", StringComparison.OrdinalIgnoreCase)
                                      // 'seabios' names the built-in firmware, not a file beside the manifest.
                                      || (key.Equals("FirmwarePath", StringComparison.OrdinalIgnoreCase) && path != Store.AllowedPaths.BuiltInFirmwareAlias))
                ? Path.GetFullPath(Path.Combine(baseDirectory, path))
                : entry.Value;
        }
        merged["Boot"] = resolved;
    }

    private static string Join(string where, string key) => where.Length == 0 ? key : $"{where}.{key}";

    internal static string Describe(PsdValue value) => value switch
    {
        PsdString s => $"the string '{s.Value}'",
        PsdNumber n => $"the number {n}",
        PsdBoolean b => b.Value ? "$true" : "$false",
        PsdNull => "$null",
        PsdHashtable => "a hashtable",
        PsdArray => "an array",
        _ => value.KindName,
    };

    // ---- plain values → PsdValue (for FromDictionary) ---------------------------------------------------

    private static PsdHashtable ToPsd(IDictionary values, SourcePosition position, int depth = 1)
    {
        var table = new PsdHashtable(position);
        foreach (DictionaryEntry entry in values)
        {
            var key = entry.Key as string ?? Convert.ToString(entry.Key, System.Globalization.CultureInfo.InvariantCulture) ?? "";
            if (table.TryAdd(new PsdHashtableEntry(key, position, ToPsdValue(entry.Value, position, key, depth + 1))) is not null)
                throw new DesiredStateException(position, null, key, "is given twice (keys are case-insensitive)");
        }
        return table;
    }

    // Values from PowerShell can nest without bound (or contain themselves): the same limit as for a manifest file.
    private static PsdValue ToPsdValue(object? value, SourcePosition position, string key, int depth)
    {
        if (depth > PsdReader.MaxNestingDepth && value is IDictionary or (IEnumerable and not string))
            throw new DesiredStateException(position, null, key,
                $"values are nested more than {PsdReader.MaxNestingDepth} levels deep (or contain themselves); at most {PsdReader.MaxNestingDepth} are allowed");
        return value switch
        {
            null => new PsdNull(position),
            string s => new PsdString(s, position),
            bool b => new PsdBoolean(b, position),
            int or long or decimal or double or byte or uint or ulong => new PsdNumber(value, position),
            short or sbyte or ushort => new PsdNumber(Convert.ToInt32(value, System.Globalization.CultureInfo.InvariantCulture), position),
            float f => new PsdNumber((double)f, position),
            IDictionary d => ToPsd(d, position, depth),
            IEnumerable e => new PsdArray(e.Cast<object?>().Select(x => ToPsdValue(x, position, key, depth + 1)).ToArray(), position),
            _ => new PsdString(Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "", position),
        };
    }
}
