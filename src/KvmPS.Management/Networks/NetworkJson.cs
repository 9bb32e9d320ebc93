using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using KvmPS.Management.Definitions;
using KvmPS.Management.Store;

namespace KvmPS.Management.Networks;

internal sealed class NetworkDocument
{
    public string? Name { get; set; }
    public string? Mode { get; set; }
    public string? Bridge { get; set; }
    public string? Subnet { get; set; }
    public string? Gateway { get; set; }
    public string? DhcpRangeStart { get; set; }
    public string? DhcpRangeEnd { get; set; }
    public List<StaticLeaseDocument>? StaticLeases { get; set; }
    public string? DnsDomain { get; set; }
    public int? MtuBytes { get; set; }
    public bool? Autostart { get; set; }
}

internal sealed class StaticLeaseDocument
{
    public string? MacAddress { get; set; }
    public string? Address { get; set; }
    public string? HostName { get; set; }
}

/// <summary>Source-generated (AOT-safe) serializer for network files; unknown keys are errors, as in vm.json and pool files.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = true)]
[JsonSerializable(typeof(NetworkDocument))]
internal sealed partial class NetworkJsonContext : JsonSerializerContext
{
}

internal static class NetworkJson
{
    public static byte[] Serialize(NetworkDefinition network) =>
        JsonSerializer.SerializeToUtf8Bytes(new NetworkDocument
        {
            Name = network.Name,
            Mode = network.Mode.ToString(),
            Bridge = network.BridgeName,
            Subnet = network.Subnet,
            Gateway = network.Gateway?.ToString(),
            DhcpRangeStart = network.DhcpRangeStart?.ToString(),
            DhcpRangeEnd = network.DhcpRangeEnd?.ToString(),
            StaticLeases = network.StaticLeases is { Count: > 0 } leases
                ? leases.Select(l => new StaticLeaseDocument { MacAddress = l.MacAddress.ToString(), Address = l.Address.ToString(), HostName = l.HostName }).ToList()
                : null,
            DnsDomain = network.DnsDomain,
            MtuBytes = network.MtuBytes,
            Autostart = network.Autostart,
        }, NetworkJsonContext.Default.NetworkDocument);

    /// <summary>Reads a network file; anything malformed is <see cref="VmStoreCorruptException"/> naming the file.</summary>
    public static NetworkDefinition Deserialize(byte[] json, string file)
    {
        NetworkDocument? d;
        try
        {
            d = JsonSerializer.Deserialize(json, NetworkJsonContext.Default.NetworkDocument);
        }
        catch (JsonException e)
        {
            throw new VmStoreCorruptException(file, e.Message, e);
        }
        if (d?.Name is null || d.Bridge is null || !Enum.TryParse<NetworkMode>(d.Mode, ignoreCase: true, out var mode))
            throw new VmStoreCorruptException(file, "a network file needs a name, a mode (Nat, Isolated, Bridge) and a bridge");
        try
        {
            var definition = new NetworkDefinition(d.Name, mode, d.Bridge, d.Subnet, Address(d.Gateway), Address(d.DhcpRangeStart), Address(d.DhcpRangeEnd),
                (d.StaticLeases ?? []).Select(l => new DhcpStaticLease(MacAddress.Parse(l.MacAddress ?? ""), Address(l.Address) ?? throw new FormatException("a static lease needs an address"), l.HostName)).ToList(),
                d.DnsDomain, d.MtuBytes, d.Autostart ?? false);
            // A file edited by hand is checked as a new definition would be.
            return NetworkValidation.Normalize(definition);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or ValueFormatException or NetworkSettingException)
        {
            throw new VmStoreCorruptException(file, e.Message, e);
        }
    }

    private static IPAddress? Address(string? text) => text is null ? null : IPAddress.Parse(text);
}
