using System.Globalization;
using System.Text.Json;

namespace KvmPS.Devices.Config;

/// <summary>A device configuration that cannot be used; names the device, the key and the source (file or flag).</summary>
public sealed class DeviceConfigException(string message) : Exception(message);

/// <summary>
/// The options of one configured device: a JSON object from the config file's "devices" array, or the key=value
/// list of a <c>--device TYPE,key=value,...</c> flag. Typed getters accept JSON values or flag strings, and
/// <see cref="EnsureAllUsed"/> rejects keys the device does not know.
/// </summary>
public sealed class DeviceOptions
{
    private readonly Dictionary<string, JsonElement?> _json = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _flag = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public string Type { get; }
    /// <summary>Where the options came from, for messages: "config.json: devices[1]" or "--device block,...".</summary>
    public string Source { get; }

    private DeviceOptions(string type, string source) { Type = type; Source = source; }

    public static DeviceOptions FromJson(JsonElement element, string source)
    {
        if (element.ValueKind != JsonValueKind.Object) throw new DeviceConfigException($"{source}: a device must be a JSON object with a \"type\".");
        if (!element.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw new DeviceConfigException($"{source}: the device has no \"type\" string (known types: {string.Join(", ", DeviceConfig.Types)}).");
        var options = new DeviceOptions(type.GetString()!, source);
        foreach (var p in element.EnumerateObject()) if (p.Name != "type") options._json[p.Name] = p.Value.Clone();
        return options;
    }

    /// <summary>Parses "TYPE,key=value,key=value" (a value may not contain a comma).</summary>
    public static DeviceOptions FromFlag(string text, string flag = "--device")
    {
        var parts = text.Split(',');
        if (parts[0].Length == 0 || parts[0].Contains('=')) throw new DeviceConfigException($"{flag} {text}: start with the device type, e.g. {flag} rng.");
        var options = new DeviceOptions(parts[0], $"{flag} {text}");
        foreach (var part in parts.Skip(1))
        {
            int eq = part.IndexOf('=');
            if (eq <= 0) throw new DeviceConfigException($"{flag} {text}: '{part}' is not key=value.");
            options._flag[part[..eq]] = part[(eq + 1)..];
        }
        return options;
    }

    public bool Has(string key) => _json.ContainsKey(key) || _flag.ContainsKey(key);

    private string Where(string key) => $"{Source}: key '{key}'";

    public string? String(string key, string? fallback = null)
    {
        _used.Add(key);
        if (_flag.TryGetValue(key, out var f)) return f;
        if (!_json.TryGetValue(key, out var j) || j is not { } v || v.ValueKind == JsonValueKind.Null) return fallback;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw new DeviceConfigException($"{Where(key)}: expected a string, got {v.ValueKind}.");
    }

    public string RequiredString(string key) => String(key) ?? throw new DeviceConfigException($"{Source}: the {Type} device needs '{key}'.");

    public bool Bool(string key, bool fallback)
    {
        _used.Add(key);
        if (_flag.TryGetValue(key, out var f))
            return f switch { "on" or "true" or "1" or "yes" => true, "off" or "false" or "0" or "no" => false, _ => throw new DeviceConfigException($"{Where(key)}: '{f}' is not on or off.") };
        if (!_json.TryGetValue(key, out var j) || j is not { } v || v.ValueKind == JsonValueKind.Null) return fallback;
        return v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw new DeviceConfigException($"{Where(key)}: expected true or false, got {v.ValueKind}.");
    }

    public long Int(string key, long fallback, long min = long.MinValue, long max = long.MaxValue)
    {
        _used.Add(key);
        long value;
        if (_flag.TryGetValue(key, out var f))
        {
            if (!long.TryParse(f, NumberStyles.Integer, CultureInfo.InvariantCulture, out value)) throw new DeviceConfigException($"{Where(key)}: '{f}' is not a whole number.");
        }
        else if (!_json.TryGetValue(key, out var j) || j is not { } v || v.ValueKind == JsonValueKind.Null) return fallback;
        else if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out value)) throw new DeviceConfigException($"{Where(key)}: expected an integer, got {v.ValueKind} {v}.");
        if (value < min || value > max) throw new DeviceConfigException($"{Where(key)}: {value} is out of range ({min}-{max}).");
        return value;
    }

    /// <summary>Call after reading every option: any key the device did not read is an error naming it.</summary>
    public void EnsureAllUsed()
    {
        foreach (var key in _json.Keys.Concat(_flag.Keys))
            if (!_used.Contains(key))
                throw new DeviceConfigException($"{Where(key)}: unknown key for a {Type} device " +
                    (_used.Count == 0 ? "(it takes no options)." : $"(known: {string.Join(", ", _used.Order())})."));
    }
}
