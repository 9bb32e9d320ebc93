using System.Collections;
using System.Globalization;

namespace KvmPS.Management.Definitions;

/// <summary>
/// A loosely typed dictionary (manifest hashtable, JSON object) read against a fixed set of keys:
/// keys are case-insensitive, unknown keys are rejected by name, and every type error names the schema path.
/// </summary>
internal sealed class SchemaMap
{
    private readonly Dictionary<string, object?> _values = new(StringComparer.OrdinalIgnoreCase);
    private readonly string _prefix;

    public SchemaMap(IDictionary source, string prefix, string vmName, IReadOnlyCollection<string> allowedKeys)
    {
        _prefix = prefix;
        VmName = vmName;
        foreach (DictionaryEntry entry in source)
        {
            if (entry.Key is not string key)
                throw Fail(Convert.ToString(entry.Key, CultureInfo.InvariantCulture) ?? "", "keys must be strings");
            if (!allowedKeys.Contains(key, StringComparer.OrdinalIgnoreCase))
                throw new VmDefinitionException(vmName, Path(key), $"unknown key '{key}' (allowed: {string.Join(", ", allowedKeys)})");
            if (!_values.TryAdd(key, entry.Value))
                throw Fail(key, "is given twice (keys are case-insensitive)");
        }
    }

    public string VmName { get; set; }

    public string Path(string key) => _prefix.Length == 0 ? key : $"{_prefix}.{key}";

    public bool Has(string key) => _values.TryGetValue(key, out var value) && value is not null;

    public object? Raw(string key) => _values.TryGetValue(key, out var value) ? value : null;

    public string? String(string key)
    {
        var value = Raw(key);
        return value switch
        {
            null => null,
            string s => s,
            _ => throw Fail(key, $"must be a string, not {Describe(value)}"),
        };
    }

    public string RequiredString(string key) => String(key) ?? throw Fail(key, "is required");

    public long? Size(string key)
    {
        var value = Raw(key);
        if (value is null)
            return null;
        if (value is bool)
            throw Fail(key, $"must be a size (bytes or e.g. 512MB), not {Describe(value)}");
        try
        {
            return SizeParser.FromValue(value);
        }
        catch (ValueFormatException e)
        {
            throw Fail(key, e.Message, e);
        }
    }

    public int? Int(string key)
    {
        var value = Raw(key);
        switch (value)
        {
            case null: return null;
            case int i: return i;
            case long or short or byte or sbyte or ushort or uint or ulong or decimal:
                var m = Convert.ToDecimal(value, CultureInfo.InvariantCulture);
                if (m == decimal.Truncate(m) && m >= int.MinValue && m <= int.MaxValue)
                    return (int)m;
                break;
            case double d when double.IsFinite(d) && Math.Floor(d) == d && d >= int.MinValue && d <= int.MaxValue:
                return (int)d;
        }
        throw Fail(key, $"must be a whole number, not {Describe(value)}");
    }

    public bool? Bool(string key)
    {
        var value = Raw(key);
        return value switch
        {
            null => null,
            bool b => b,
            _ => throw Fail(key, $"must be $true or $false, not {Describe(value)}"),
        };
    }

    public TEnum? Enum<TEnum>(string key) where TEnum : struct, Enum
    {
        var text = String(key);
        if (text is null)
            return null;
        foreach (var candidate in System.Enum.GetValues<TEnum>())
            if (string.Equals(candidate.ToString(), text, StringComparison.OrdinalIgnoreCase))
                return candidate;
        var allowed = string.Join(", ", System.Enum.GetValues<TEnum>().Select(v => v.ToString().ToLowerInvariant()));
        throw Fail(key, $"'{text}' is not one of: {allowed}");
    }

    public IDictionary? Map(string key)
    {
        var value = Raw(key);
        return value switch
        {
            null => null,
            IDictionary map => map,
            _ => throw Fail(key, $"must be a hashtable, not {Describe(value)}"),
        };
    }

    /// <summary>A list; a single non-list value counts as a one-element list (PowerShell unrolls @(x) freely).</summary>
    public IReadOnlyList<object?>? List(string key)
    {
        var value = Raw(key);
        return value switch
        {
            null => null,
            string or IDictionary => new[] { value },
            IEnumerable items => items.Cast<object?>().ToArray(),
            _ => new[] { value },
        };
    }

    public VmDefinitionException Fail(string key, string reason, Exception? inner = null) => new(VmName, Path(key), reason, inner);

    public static string Describe(object? value) => value switch
    {
        null => "$null",
        string s => $"the string '{s}'",
        bool b => b ? "$true" : "$false",
        IDictionary => "a hashtable",
        IEnumerable => "an array",
        _ => $"the number {Convert.ToString(value, CultureInfo.InvariantCulture)}",
    };
}
