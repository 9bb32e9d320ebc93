using System.Globalization;
using KvmPS.Management.Manifests;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// Maps a schema path from a <see cref="Definitions.VmDefinitionException"/> (<c>VcpuCount</c>,
/// <c>Disks[1].Format</c>, <c>NetworkAdapters[0]</c>) back to the manifest text it came from. A VM entry's keys
/// may come from the entry itself or from the manifest's <c>Defaults</c>, so the map is built from the merged
/// entries. A path that does not exist in the text (a required key that is missing, a value derived from another
/// key) maps to the closest thing that does: the derived-from key, else the enclosing hashtable.
/// </summary>
public sealed class ManifestPositionMap
{
    private readonly Dictionary<string, PsdHashtableEntry> _entries = new(StringComparer.OrdinalIgnoreCase);

    /// <param name="container">The VM's hashtable: the fallback position.</param>
    /// <param name="layers">Hashtables whose entries make up the VM, lowest precedence first (Defaults, then the entry).</param>
    public ManifestPositionMap(PsdHashtable container, params PsdHashtable?[] layers)
    {
        Container = container ?? throw new ArgumentNullException(nameof(container));
        foreach (var layer in layers)
            if (layer is not null)
                foreach (var entry in layer.Entries)
                    _entries[entry.Key] = entry;
    }

    public PsdHashtable Container { get; }

    /// <summary>Keys whose value is derived from another key when not given.</summary>
    private static readonly Dictionary<string, string> DerivedFrom = new(StringComparer.OrdinalIgnoreCase)
    {
        ["MemoryMinimumBytes"] = "MemoryStartupBytes",
        ["MemoryMaximumBytes"] = "MemoryStartupBytes",
        ["VcpuMaximum"] = "VcpuCount",
    };

    /// <summary>
    /// The position of <paramref name="path"/>: the key itself when <paramref name="atKey"/> (for "unknown key"),
    /// otherwise its value.
    /// </summary>
    public SourcePosition Locate(string path, bool atKey = false)
    {
        var segments = Split(path);
        if (segments.Count == 0 || segments[0] is not string first)
            return Container.Position;
        if (!_entries.TryGetValue(first, out var entry))
        {
            if (segments.Count == 1 && DerivedFrom.TryGetValue(first, out var source) && _entries.TryGetValue(source, out var sourceEntry))
                return sourceEntry.Value.Position;
            return Container.Position;
        }
        PsdValue value = entry.Value;
        PsdHashtableEntry? lastEntry = entry;
        for (var i = 1; i < segments.Count; i++)
        {
            switch (segments[i])
            {
                case int index:
                    lastEntry = null;
                    if (value is PsdArray array)
                    {
                        if (index >= array.Count)
                            return array.Position;
                        value = array[index];
                    }
                    else if (index != 0)
                    {
                        return value.Position;
                    }
                    break;
                case string key:
                    if (value is not PsdHashtable table || !table.TryGetEntry(key, out var nested))
                        return value.Position;
                    lastEntry = nested;
                    value = nested.Value;
                    break;
            }
        }
        return atKey && lastEntry is not null ? lastEntry.KeyPosition : value.Position;
    }

    /// <summary><c>Disks[1].Format</c> → "Disks", 1, "Format".</summary>
    internal static IReadOnlyList<object> Split(string path)
    {
        var segments = new List<object>();
        var i = 0;
        while (i < path.Length)
        {
            if (path[i] == '.')
            {
                i++;
                continue;
            }
            if (path[i] == '[')
            {
                var close = path.IndexOf(']', i);
                if (close < 0)
                    break;
                if (int.TryParse(path.AsSpan(i + 1, close - i - 1), NumberStyles.None, CultureInfo.InvariantCulture, out var index))
                    segments.Add(index);
                i = close + 1;
                continue;
            }
            var end = i;
            while (end < path.Length && path[end] is not ('.' or '['))
                end++;
            segments.Add(path[i..end]);
            i = end;
        }
        return segments;
    }
}
