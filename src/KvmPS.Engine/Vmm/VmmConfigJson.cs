using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using KvmPS.Devices.Config;

namespace KvmPS.Vmm;

/// <summary>
/// The VMM configuration a process was started with, as one --config JSON object (the snapshot's config.json):
/// the --config file's keys with the command-line flags applied on top, flags turned into typed JSON values.
/// Per-process attachments (control_socket, serial, debugcon) are left out: a restore gives its own.
/// </summary>
public static class VmmConfigJson
{
    private static readonly string[] ProcessOnlyKeys = ["control_socket", "serial", "debugcon"];
    private static readonly string[] IntegerKeys = ["vcpus", "max_vcpus", "numa_node"];
    private static readonly string[] BooleanKeys = ["ksm", "rng"];

    /// <summary>Builds the JSON from arguments that <see cref="VmmConfig.FromArgs"/> accepted.</summary>
    public static string FromArgs(IReadOnlyList<string> args)
    {
        var root = new JsonObject();
        var devices = new JsonArray();
        var flags = new List<(string Key, string Value)>();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            string flag = a, value;
            int eq = a.IndexOf('=');
            if (a.StartsWith("--", StringComparison.Ordinal) && eq > 0) { flag = a[..eq]; value = a[(eq + 1)..]; }
            else if (i + 1 < args.Count) value = args[++i];
            else continue;
            string key = flag.TrimStart('-').Replace('-', '_');
            if (key == "config")
            {
                var file = JsonNode.Parse(File.ReadAllText(value), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
                if (file is JsonObject o)
                    foreach (var (k, v) in o.ToList())
                    {
                        if (k == "devices" && v is JsonArray fileDevices) foreach (var d in fileDevices) devices.Add(d?.DeepClone());
                        else root[k] = v?.DeepClone();
                    }
            }
            else if (key == "device") devices.Add((JsonNode)DeviceFlagToJson(value)); // the JsonNode overload: the generic one is not AOT-safe
            else flags.Add((key, value));
        }
        foreach (var (key, value) in flags)
        {
            if (key == "rng")
            {
                // --rng is sugar for a virtio-rng entry: keep it as the device list the machine really has.
                for (int d = devices.Count - 1; d >= 0; d--) if (devices[d]?["type"]?.GetValue<string>() == "rng") devices.RemoveAt(d);
                if (value is "on" or "true" or "1") devices.Add((JsonNode)new JsonObject { ["type"] = "rng" });
                root.Remove("rng");
                continue;
            }
            root[key] = FlagValue(key, value);
        }
        if (root["rng"] is JsonValue rng && rng.TryGetValue(out bool rngOn))
        {
            root.Remove("rng");
            if (rngOn && !devices.Any(d => d?["type"]?.GetValue<string>() == "rng")) devices.Add((JsonNode)new JsonObject { ["type"] = "rng" });
        }
        foreach (var k in ProcessOnlyKeys) root.Remove(k);
        root.Remove("devices");
        if (devices.Count > 0) root["devices"] = devices;
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static JsonNode? FlagValue(string key, string value)
    {
        if (Array.IndexOf(IntegerKeys, key) >= 0 && long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n)) return JsonValue.Create(n);
        if (Array.IndexOf(BooleanKeys, key) >= 0) return JsonValue.Create(value is "on" or "true" or "1");
        return JsonValue.Create(value);
    }

    /// <summary>
    /// A --device TYPE,k=v flag as a JSON object. Flag values are text; JSON needs the type each key has, so values that
    /// read as booleans or integers are tried as such, and the first typing whose parsed device equals the flag's wins.
    /// </summary>
    private static JsonObject DeviceFlagToJson(string flag)
    {
        var parts = flag.Split(',');
        var pairs = parts.Skip(1).Select(p => { int eq = p.IndexOf('='); return (Key: p[..eq], Value: p[(eq + 1)..]); }).ToList();
        DeviceConfig expected = DeviceConfig.FromOptions(DeviceOptions.FromFlag(flag));
        var ambiguous = pairs.Select((p, i) => (p, i)).Where(x => Typed(x.p.Value) is not null).Select(x => x.i).ToList();
        int combos = 1 << Math.Min(ambiguous.Count, 8);
        JsonObject Build(int stringMask)
        {
            var o = new JsonObject { ["type"] = parts[0] };
            for (int i = 0; i < pairs.Count; i++)
            {
                int bit = ambiguous.IndexOf(i);
                bool asString = bit < 0 || bit >= 8 || (stringMask & (1 << bit)) != 0;
                o[pairs[i].Key] = asString ? JsonValue.Create(pairs[i].Value) : Typed(pairs[i].Value);
            }
            return o;
        }
        for (int mask = 0; mask < combos; mask++)
        {
            var candidate = Build(mask);
            try
            {
                using var doc = JsonDocument.Parse(candidate.ToJsonString());
                if (DeviceConfig.FromOptions(DeviceOptions.FromJson(doc.RootElement, "config.json")).Equals(expected)) return candidate;
            }
            catch (DeviceConfigException) { }
        }
        return Build(0);
    }

    private static JsonNode? Typed(string value) => value switch
    {
        "on" or "true" or "yes" => JsonValue.Create(true),
        "off" or "false" or "no" => JsonValue.Create(false),
        _ when long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) => JsonValue.Create(n),
        _ => null,
    };
}
