using System.Text.Json.Serialization;

namespace KvmPS.Management.Definitions;

/// <summary>
/// Source-generated (reflection-free) serializer metadata, so vm.json handling works under trimming and
/// NativeAOT. Unknown properties are errors: a typo in a hand-edited vm.json must not be silently ignored.
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = true)]
[JsonSerializable(typeof(VmDefinitionDocument))]
internal sealed partial class VmDefinitionJsonContext : JsonSerializerContext
{
}
