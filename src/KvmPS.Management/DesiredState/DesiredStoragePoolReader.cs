using KvmPS.Management.Manifests;
using KvmPS.Management.Pools;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// Reads a manifest's <c>StoragePools = @( @{ Name = 'lab'; Path = '/srv/lab'; Autostart = $true; Ensure = 'Present' } )</c>
/// (docs/pools.md). Keys are case-insensitive, unknown keys are errors naming file:line:column, the pool and the key; a
/// pool may be declared once across all files given.
/// </summary>
internal static class DesiredStoragePoolReader
{
    public static readonly IReadOnlyList<string> PoolKeys = new[] { "Name", "Path", "Autostart", "Ensure" };

    public static void Read(PsdHashtable root, string baseDirectory, List<DesiredStoragePool> pools)
    {
        if (!root.TryGetEntry("StoragePools", out var entry) || entry.Value is PsdNull)
            return;
        IReadOnlyList<PsdValue> items = entry.Value switch
        {
            PsdArray array => array.Items,
            PsdHashtable single => new PsdValue[] { single },
            var other => throw new DesiredStateException(other.Position, null, "StoragePools", $"must be a list of hashtables, not {DesiredStateReader.Describe(other)}"),
        };
        for (var i = 0; i < items.Count; i++)
        {
            var where = $"StoragePools[{i}]";
            if (items[i] is not PsdHashtable table)
                throw new DesiredStateException(items[i].Position, null, where, $"must be a hashtable (a pool entry), not {DesiredStateReader.Describe(items[i])}");
            var pool = ReadPool(table, where, baseDirectory);
            if (pools.FirstOrDefault(p => p.Name == pool.Name) is { } first)
                throw new DesiredStateException(table.Position, null, where + ".Name", $"pool '{pool.Name}' is declared twice (first at {first.Position})");
            pools.Add(pool);
        }
    }

    private static DesiredStoragePool ReadPool(PsdHashtable table, string where, string baseDirectory)
    {
        foreach (var key in table.Entries)
            if (!PoolKeys.Contains(key.Key, StringComparer.OrdinalIgnoreCase))
                throw new DesiredStateException(key.KeyPosition, null, $"{where}.{key.Key}", $"unknown key '{key.Key}' (a pool has: {string.Join(", ", PoolKeys)})");
        var name = String(table, where, "Name") ?? throw new DesiredStateException(table.Position, null, where + ".Name", "is required");
        if (!StoragePoolNames.IsValidPool(name))
            throw new DesiredStateException(table.Position, null, where + ".Name", $"'{name}' is not a valid pool name (1-63 letters, digits, '.', '_' or '-', starting with a letter or digit)");
        var ensure = VmEnsure.Present;
        if (String(table, where, "Ensure") is { } ensureText)
            ensure = Enum.TryParse<VmEnsure>(ensureText, ignoreCase: true, out var parsed) && Enum.IsDefined(parsed)
                ? parsed
                : throw new DesiredStateException(table.Position, null, where + ".Ensure", $"'{ensureText}' is not one of 'Present', 'Absent'");
        bool? autostart = null;
        if (table.TryGetEntry("Autostart", out var autostartEntry) && autostartEntry.Value is not PsdNull)
            autostart = autostartEntry.Value is PsdBoolean b ? b.Value
                : throw new DesiredStateException(autostartEntry.Value.Position, null, where + ".Autostart", $"must be $true or $false, not {DesiredStateReader.Describe(autostartEntry.Value)}");
        var path = String(table, where, "Path");
        if (name == StoragePoolNames.DefaultPool)
            throw new DesiredStateException(table.Position, name, where + ".Name", "'default' is the built-in pool (under the store); it needs no entry and cannot be changed or removed");
        if (ensure == VmEnsure.Present)
        {
            if (string.IsNullOrWhiteSpace(path))
                throw new DesiredStateException(table.Position, null, where + ".Path", $"is required for pool '{name}' (the folder holding its volumes)");
            path = Path.TrimEndingDirectorySeparator(Path.GetFullPath(Path.Combine(baseDirectory, path)));
        }
        return new DesiredStoragePool { Name = name, Ensure = ensure, Path = path, Autostart = autostart, Position = table.Position };
    }

    private static string? String(PsdHashtable table, string where, string key)
    {
        if (!table.TryGetEntry(key, out var entry) || entry.Value is PsdNull)
            return null;
        return entry.Value is PsdString s ? s.Value
            : throw new DesiredStateException(entry.Value.Position, null, $"{where}.{key}", $"must be a string, not {DesiredStateReader.Describe(entry.Value)}");
    }
}
