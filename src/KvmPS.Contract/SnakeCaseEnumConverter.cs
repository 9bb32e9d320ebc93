using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvmPS.Contract;

/// <summary>Enums as snake_case strings (<c>Hugetlbfs</c> ↔ <c>"hugetlbfs"</c>); numbers are refused. AOT-safe.</summary>
public sealed class SnakeCaseEnumConverter<TEnum>() : JsonStringEnumConverter<TEnum>(JsonNamingPolicy.SnakeCaseLower, allowIntegerValues: false)
    where TEnum : struct, Enum;
