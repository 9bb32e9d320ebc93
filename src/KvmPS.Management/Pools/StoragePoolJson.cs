using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvmPS.Management.Pools;

internal sealed class StoragePoolDocument
{
    public string? Name { get; set; }
    public string? Path { get; set; }
    public bool? Autostart { get; set; }
}

/// <summary>Source-generated (AOT-safe) serializer for pool files; unknown keys are errors, as in vm.json.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = true)]
[JsonSerializable(typeof(StoragePoolDocument))]
internal sealed partial class StoragePoolJsonContext : JsonSerializerContext
{
}

internal static class StoragePoolJson
{
    public static byte[] Serialize(StoragePoolDefinition pool) =>
        JsonSerializer.SerializeToUtf8Bytes(new StoragePoolDocument { Name = pool.Name, Path = pool.Path, Autostart = pool.Autostart }, StoragePoolJsonContext.Default.StoragePoolDocument);

    public static StoragePoolDefinition Deserialize(byte[] json, string file)
    {
        StoragePoolDocument? document;
        try
        {
            document = JsonSerializer.Deserialize(json, StoragePoolJsonContext.Default.StoragePoolDocument);
        }
        catch (JsonException e)
        {
            throw new KvmPS.Management.Store.VmStoreCorruptException(file, e.Message, e);
        }
        if (document?.Name is null || document.Path is null || !StoragePoolNames.IsValidPool(document.Name) || !System.IO.Path.IsPathRooted(document.Path))
            throw new KvmPS.Management.Store.VmStoreCorruptException(file, "a pool file needs a valid name and an absolute path");
        return new StoragePoolDefinition(document.Name, document.Path, document.Autostart ?? false);
    }
}
