using System.Text.Json.Serialization;

namespace KvmPS.Vmm;

/// <summary>Source-generated JSON metadata (NativeAOT has no reflection-based serializer).</summary>
[JsonSerializable(typeof(int))]
[JsonSerializable(typeof(bool))]
[JsonSerializable(typeof(string))]
internal sealed partial class VmmJsonContext : JsonSerializerContext;
