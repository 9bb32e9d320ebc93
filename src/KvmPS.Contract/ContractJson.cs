using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace KvmPS.Contract;

/// <summary>A configuration or reply that does not fit the contract; the message names the source and the field.</summary>
public sealed class ContractException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Source-generated (AOT- and trim-safe) metadata for every wire record. Field names are snake_case.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true)]
[JsonSerializable(typeof(VmmConfiguration))]
[JsonSerializable(typeof(DeviceSpec))]
[JsonSerializable(typeof(BlockDeviceSpec))]
[JsonSerializable(typeof(NetDeviceSpec))]
[JsonSerializable(typeof(BalloonDeviceSpec))]
[JsonSerializable(typeof(RngDeviceSpec))]
[JsonSerializable(typeof(VsockDeviceSpec))]
[JsonSerializable(typeof(MemDeviceSpec))]
[JsonSerializable(typeof(CdromDeviceSpec))]
[JsonSerializable(typeof(DisplayDeviceSpec))]
[JsonSerializable(typeof(VfioUserDeviceSpec))]
[JsonSerializable(typeof(VfioDeviceSpec))]
[JsonSerializable(typeof(VncSpec))]
[JsonSerializable(typeof(PingRequest))]
[JsonSerializable(typeof(DescribeRequest))]
[JsonSerializable(typeof(StatusRequest))]
[JsonSerializable(typeof(MetricsRequest))]
[JsonSerializable(typeof(PauseRequest))]
[JsonSerializable(typeof(ResumeRequest))]
[JsonSerializable(typeof(StopRequest))]
[JsonSerializable(typeof(ConsoleAttachRequest))]
[JsonSerializable(typeof(SnapshotCreateRequest))]
[JsonSerializable(typeof(VcpuSetRequest))]
[JsonSerializable(typeof(DeviceAddRequest))]
[JsonSerializable(typeof(DeviceRemoveRequest))]
[JsonSerializable(typeof(MigrateRequest))]
[JsonSerializable(typeof(MigrateStatusRequest))]
[JsonSerializable(typeof(MigrateCancelRequest))]
[JsonSerializable(typeof(BalloonSetRequest))]
[JsonSerializable(typeof(BalloonGetRequest))]
[JsonSerializable(typeof(NetStatsRequest))]
[JsonSerializable(typeof(MemorySetRequest))]
[JsonSerializable(typeof(MemoryGetRequest))]
[JsonSerializable(typeof(MediaChangeRequest))]
[JsonSerializable(typeof(DisplayGetRequest))]
[JsonSerializable(typeof(MediaStateReply))]
[JsonSerializable(typeof(DisplayStateReply))]
[JsonSerializable(typeof(ControlReply))]
[JsonSerializable(typeof(PingReply))]
[JsonSerializable(typeof(ConsoleAttachReply))]
[JsonSerializable(typeof(DescribeReply))]
[JsonSerializable(typeof(StatusReply))]
[JsonSerializable(typeof(MetricsReply))]
[JsonSerializable(typeof(StopReply))]
[JsonSerializable(typeof(SnapshotCreateReply))]
[JsonSerializable(typeof(VcpuSetReply))]
[JsonSerializable(typeof(DeviceAddReply))]
[JsonSerializable(typeof(DeviceRemoveReply))]
[JsonSerializable(typeof(MigrateStatusReply))]
[JsonSerializable(typeof(BalloonStateReply))]
[JsonSerializable(typeof(NetStatsReply))]
[JsonSerializable(typeof(MemoryStateReply))]
public sealed partial class ContractJsonContext : JsonSerializerContext;

/// <summary>Reading and writing the contract's documents, with errors that name the source and the field.</summary>
public static class ContractJson
{
    /// <summary>The configuration as indented UTF-8 JSON, null fields left out.</summary>
    public static byte[] WriteConfiguration(VmmConfiguration configuration)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
            JsonSerializer.Serialize(writer, configuration, ContractJsonContext.Default.VmmConfiguration);
        return buffer.ToArray();
    }

    /// <summary>
    /// Reads a configuration document (comments and trailing commas allowed). Throws <see cref="ContractException"/>
    /// naming <paramref name="source"/> and the field: unknown fields, wrong types, bad enum values, unknown device types.
    /// </summary>
    public static VmmConfiguration ReadConfiguration(ReadOnlySpan<byte> json, string source)
    {
        JsonDocument document;
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            document = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException e)
        {
            throw new ContractException($"{source}: invalid JSON at line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}.", e);
        }
        // Read from the bytes once checked: reading from the element would write it out again first (a JSON writer and
        // its encoder set up for nothing, on kvmps-vmm's start-up path).
        using (document)
            return Read(document.RootElement, json, ContractJsonContext.Default.VmmConfiguration, source);
    }

    /// <summary>Checks <paramref name="value"/> against the record (fields, kinds, required) and reads it; errors name <paramref name="source"/> and the field.</summary>
    public static T Read<T>(JsonElement value, JsonTypeInfo<T> typeInfo, string source) => Read(value, default, typeInfo, source);

    /// <summary>As above; with <paramref name="utf8"/> (the text <paramref name="value"/> was parsed from) read from it.</summary>
    private static T Read<T>(JsonElement value, ReadOnlySpan<byte> utf8, JsonTypeInfo<T> typeInfo, string source)
    {
        try
        {
            ContractValidator.CheckObject(value, typeInfo, "");
            T? read = utf8.IsEmpty ? value.Deserialize(typeInfo) : JsonSerializer.Deserialize(utf8, typeInfo);
            return read ?? throw new ContractException("the value is null.");
        }
        catch (ContractException e)
        {
            throw new ContractException($"{source}: {e.Message}", e);
        }
        catch (JsonException e)
        {
            throw new ContractException($"{source}: {Explain(e)}", e);
        }
    }

    /// <summary>A reply's result as its record; <see cref="ContractException"/> naming the request and field if it does not fit.</summary>
    public static T ReadResult<T>(JsonElement? result, JsonTypeInfo<T> typeInfo, string request)
    {
        if (result is not { ValueKind: JsonValueKind.Object } value)
            throw new ContractException($"reply to '{request}': the result is not an object");
        try
        {
            return value.Deserialize(typeInfo) ?? throw new ContractException($"reply to '{request}': the result is null");
        }
        catch (JsonException e)
        {
            throw new ContractException($"reply to '{request}': {Explain(e)}", e);
        }
    }

    /// <summary>A System.Text.Json error with the field it is about first (<c>field 'devices[0].tap': …</c>).</summary>
    public static string Explain(JsonException e)
    {
        // A message of our own (the device converter's) stands alone; System.Text.Json's own ends in " Path: …".
        string message = e.InnerException is ContractException inner ? inner.Message : e.Message;
        int pathAt = message.IndexOf(" Path: ", StringComparison.Ordinal);
        if (pathAt > 0) message = message[..pathAt];
        string? field = e.Path is { Length: > 2 } p && p.StartsWith("$.", StringComparison.Ordinal) ? p[2..] : null;
        return field is null ? message : $"field '{field}': {message}";
    }
}
