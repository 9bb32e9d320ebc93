using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace KvmPS.Contract;

/// <summary>
/// Reads and writes a <see cref="DeviceSpec"/> by its <c>type</c> field. Unlike System.Text.Json's built-in
/// polymorphism (which on .NET 8 needs the discriminator first), <c>type</c> may appear anywhere in the object, and
/// an unknown or missing type is an error listing the known ones. Source-generated metadata only: AOT-safe.
/// </summary>
public sealed class DeviceSpecConverter : JsonConverter<DeviceSpec>
{
    /// <summary>Every device record by its wire type.</summary>
    public static IReadOnlyDictionary<string, JsonTypeInfo> TypeInfos { get; } = new Dictionary<string, JsonTypeInfo>(StringComparer.Ordinal)
    {
        [BlockDeviceSpec.TypeName] = ContractJsonContext.Default.BlockDeviceSpec,
        [NetDeviceSpec.TypeName] = ContractJsonContext.Default.NetDeviceSpec,
        [BalloonDeviceSpec.TypeName] = ContractJsonContext.Default.BalloonDeviceSpec,
        [RngDeviceSpec.TypeName] = ContractJsonContext.Default.RngDeviceSpec,
        [VsockDeviceSpec.TypeName] = ContractJsonContext.Default.VsockDeviceSpec,
        [MemDeviceSpec.TypeName] = ContractJsonContext.Default.MemDeviceSpec,
        [CdromDeviceSpec.TypeName] = ContractJsonContext.Default.CdromDeviceSpec,
        [DisplayDeviceSpec.TypeName] = ContractJsonContext.Default.DisplayDeviceSpec,
        [VfioUserDeviceSpec.TypeName] = ContractJsonContext.Default.VfioUserDeviceSpec,
        [VfioDeviceSpec.TypeName] = ContractJsonContext.Default.VfioDeviceSpec,
    };

    public override DeviceSpec? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var element = JsonElement.ParseValue(ref reader);
        JsonTypeInfo typeInfo;
        try { typeInfo = ContractValidator.CheckDevice(element, ""); }
        catch (ContractException e) { throw new JsonException(e.Message, e); }
        var fields = JsonObject.Create(element)!;
        fields.Remove("type");
        return (DeviceSpec?)fields.Deserialize(typeInfo);
    }

    public override void Write(Utf8JsonWriter writer, DeviceSpec value, JsonSerializerOptions options)
    {
        if (!TypeInfos.TryGetValue(value.Type, out var typeInfo))
            throw new JsonException($"device type '{value.Type}' has no record in the contract.");
        var fields = JsonSerializer.SerializeToElement(value, typeInfo);
        writer.WriteStartObject();
        writer.WriteString("type", value.Type);
        foreach (var field in fields.EnumerateObject()) field.WriteTo(writer);
        writer.WriteEndObject();
    }
}
