using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace KvmPS.Contract;

/// <summary>
/// Checks a JSON object against a record's source-generated metadata before it is deserialized, so every error names
/// the field and says what was expected in plain words (the AOT-published VMM strips System.Text.Json's own messages).
/// Unknown fields, missing required fields, wrong JSON kinds, integers out of range and unknown enum names are caught
/// here; JsonUnmappedMemberHandling.Disallow on the records stays as the backstop.
/// </summary>
internal static class ContractValidator
{
    /// <summary>Throws <see cref="ContractException"/> naming the field (a path like <c>devices[1].tap</c>).</summary>
    public static void CheckObject(JsonElement value, JsonTypeInfo typeInfo, string path, string? ignoredField = null)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new ContractException($"{Where(path)}expected a JSON object, got {Kind(value)}.");
        var byName = new Dictionary<string, JsonPropertyInfo>(StringComparer.Ordinal);
        foreach (var property in typeInfo.Properties)
            if (property.Set is not null) byName[property.Name] = property;
        foreach (var field in value.EnumerateObject())
        {
            if (field.Name == ignoredField) continue;
            string fieldPath = path.Length == 0 ? field.Name : $"{path}.{field.Name}";
            if (!byName.TryGetValue(field.Name, out var property))
                throw new ContractException($"unknown field '{fieldPath}' (known: {string.Join(", ", byName.Keys.Order(StringComparer.Ordinal))}).");
            CheckValue(field.Value, property.PropertyType, fieldPath);
        }
        foreach (var property in byName.Values)
            if (property.IsRequired && !value.TryGetProperty(property.Name, out _))
                throw new ContractException($"missing field '{(path.Length == 0 ? property.Name : $"{path}.{property.Name}")}' ({Expected(property.PropertyType)}).");
    }

    /// <summary>A device object: its <c>type</c> picks the record (DeviceSpecConverter.TypeInfos).</summary>
    public static JsonTypeInfo CheckDevice(JsonElement value, string path)
    {
        string known = string.Join(", ", DeviceSpecConverter.TypeInfos.Keys.Order(StringComparer.Ordinal));
        if (value.ValueKind != JsonValueKind.Object)
            throw new ContractException($"{Where(path)}a device must be a JSON object with a \"type\" ({known}).");
        if (!value.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw new ContractException($"{Where(path)}the device has no \"type\" string (known types: {known}).");
        if (!DeviceSpecConverter.TypeInfos.TryGetValue(type.GetString()!, out var typeInfo))
            throw new ContractException($"{Where(path + ".type")}unknown device type '{type.GetString()}' (known types: {known}).");
        CheckObject(value, typeInfo, path, ignoredField: "type");
        return typeInfo;
    }

    private static void CheckValue(JsonElement value, Type type, string path)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            if (type.IsValueType && Nullable.GetUnderlyingType(type) is null)
                throw new ContractException($"{Where(path)}expected {Expected(type)}, got null.");
            return;
        }
        type = Nullable.GetUnderlyingType(type) ?? type;
        bool ok = type switch
        {
            _ when type == typeof(string) => value.ValueKind == JsonValueKind.String,
            _ when type == typeof(bool) => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
            _ when type == typeof(int) => value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out _),
            _ when type == typeof(long) => value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out _),
            _ when type == typeof(JsonElement) => true,
            _ when type.IsEnum => value.ValueKind == JsonValueKind.String && EnumNames(type).Contains(value.GetString()!),
            _ when type == typeof(IReadOnlyList<DeviceSpec>) => value.ValueKind == JsonValueKind.Array,
            _ when type == typeof(DeviceSpec) => value.ValueKind == JsonValueKind.Object,
            _ => true, // nested records and maps: their own metadata checks them when deserialized
        };
        if (!ok)
            throw new ContractException($"{Where(path)}expected {Expected(type)}, got {Kind(value)}.");
        if (type == typeof(DeviceSpec))
            CheckDevice(value, path);
        if (type == typeof(IReadOnlyList<DeviceSpec>))
        {
            int index = 0;
            foreach (var device in value.EnumerateArray())
                CheckDevice(device, $"{path}[{index++}]");
        }
    }

    private static string Where(string path) => path.Length == 0 ? "" : $"field '{path}': ";

    private static IEnumerable<string> EnumNames(Type enumType) =>
        Enum.GetNames(enumType).Select(JsonNamingPolicy.SnakeCaseLower.ConvertName);

    private static string Expected(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type == typeof(string)) return "a string";
        if (type == typeof(bool)) return "true or false";
        if (type == typeof(int)) return $"a whole number ({int.MinValue} to {int.MaxValue})";
        if (type == typeof(long)) return "a whole number";
        if (type.IsEnum) return "one of " + string.Join(", ", EnumNames(type).Select(n => $"\"{n}\""));
        if (type == typeof(IReadOnlyList<DeviceSpec>)) return "an array of device objects";
        if (type == typeof(DeviceSpec)) return "a device object";
        return "a JSON value of type " + type.Name;
    }

    private static string Kind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => $"the string \"{Shorten(value.GetString()!)}\"",
        JsonValueKind.Number => "the number " + Shorten(value.GetRawText()),
        JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => value.ValueKind.ToString().ToLower(CultureInfo.InvariantCulture),
    };

    private static string Shorten(string text) => text.Length <= 40 ? text : text[..40] + "…";
}
