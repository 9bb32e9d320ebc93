using System.Collections;
using System.Collections.Specialized;
using System.Diagnostics.CodeAnalysis;

namespace KvmPS.Management.Manifests;

/// <summary>
/// <c>@{ ... }</c>. Keys compare case-insensitively (as in PowerShell) and entries keep source order.
/// Numeric keys are stored as their invariant text (<c>@{ 1 = 'a' }</c> has key "1").
/// </summary>
public sealed class PsdHashtable : PsdValue, IReadOnlyDictionary<string, PsdValue>
{
    private readonly List<PsdHashtableEntry> _entries = new();
    private readonly Dictionary<string, int> _indexByKey = new(StringComparer.OrdinalIgnoreCase);

    public PsdHashtable(SourcePosition position) : base(position) { }

    public IReadOnlyList<PsdHashtableEntry> Entries => _entries;
    public int Count => _entries.Count;
    public override string KindName => "hashtable";

    public PsdValue this[string key] =>
        TryGetValue(key, out var value) ? value : throw new KeyNotFoundException($"Key '{key}' is not in the hashtable.");

    public IEnumerable<string> Keys => _entries.Select(e => e.Key);
    public IEnumerable<PsdValue> Values => _entries.Select(e => e.Value);

    public bool ContainsKey(string key) => _indexByKey.ContainsKey(key);

    public bool TryGetValue(string key, [MaybeNullWhen(false)] out PsdValue value)
    {
        if (_indexByKey.TryGetValue(key, out var index))
        {
            value = _entries[index].Value;
            return true;
        }
        value = null;
        return false;
    }

    public bool TryGetEntry(string key, [MaybeNullWhen(false)] out PsdHashtableEntry entry)
    {
        if (_indexByKey.TryGetValue(key, out var index))
        {
            entry = _entries[index];
            return true;
        }
        entry = null;
        return false;
    }

    /// <summary>Adds an entry; returns the existing entry instead when the key is already present.</summary>
    internal PsdHashtableEntry? TryAdd(PsdHashtableEntry entry)
    {
        if (_indexByKey.TryGetValue(entry.Key, out var existing))
            return _entries[existing];
        _indexByKey.Add(entry.Key, _entries.Count);
        _entries.Add(entry);
        return null;
    }

    public override object? ToPlainObject()
    {
        var plain = new OrderedDictionary(StringComparer.OrdinalIgnoreCase);
        foreach (var entry in _entries)
            plain.Add(entry.Key, entry.Value.ToPlainObject());
        return plain;
    }

    public IEnumerator<KeyValuePair<string, PsdValue>> GetEnumerator() =>
        _entries.Select(e => new KeyValuePair<string, PsdValue>(e.Key, e.Value)).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
