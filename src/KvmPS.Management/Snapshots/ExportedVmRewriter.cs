using System.Buffers;
using System.Text.Json;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Snapshots;

/// <summary>
/// What changes when an exported VM lands in a store: its folder (so every path under it), the paths of disks
/// that lived outside the store, and for a clone its MAC addresses and vsock CID.
/// </summary>
internal sealed class ExportedVmRewriter
{
    public ExportedVmRewriter(string oldVmDirectory, string newVmDirectory, IReadOnlyDictionary<string, string> diskPaths,
        IReadOnlyDictionary<MacAddress, MacAddress> macs, ulong? newGuestCid)
    {
        OldVmDirectory = Path.TrimEndingDirectorySeparator(oldVmDirectory);
        NewVmDirectory = Path.TrimEndingDirectorySeparator(newVmDirectory);
        DiskPaths = diskPaths;
        Macs = macs;
        NewGuestCid = newGuestCid;
    }

    public string OldVmDirectory { get; }
    public string NewVmDirectory { get; }

    /// <summary>Absolute disk path at export → absolute path after import (disks that were outside the VM folder).</summary>
    public IReadOnlyDictionary<string, string> DiskPaths { get; }

    public IReadOnlyDictionary<MacAddress, MacAddress> Macs { get; }

    /// <summary>The clone's vsock CID; null keeps the one recorded.</summary>
    public ulong? NewGuestCid { get; }

    public string MapPath(string path)
    {
        if (DiskPaths.TryGetValue(path, out var mapped))
            return mapped;
        if (path == OldVmDirectory)
            return NewVmDirectory;
        return path.StartsWith(OldVmDirectory + "/", StringComparison.Ordinal) ? NewVmDirectory + path[OldVmDirectory.Length..] : path;
    }

    public VmDefinition MapDefinition(VmDefinition definition) => definition with
    {
        NetworkAdapters = new ValueList<NetworkAdapterDefinition>(definition.NetworkAdapters.Select(a =>
            Macs.TryGetValue(a.MacAddress, out var mac) ? a with { MacAddress = mac } : a)),
    };

    public VmSnapshot MapSnapshot(VmSnapshot snapshot) => snapshot with
    {
        DiskSnapshots = snapshot.DiskSnapshots.Select(d => d with { Path = MapPath(d.Path) }).ToList(),
    };

    /// <summary>
    /// A VMM configuration (a snapshot's config.json): every path string mapped, every <c>mac</c> mapped, every
    /// <c>guest_cid</c> replaced for a clone. Unknown keys pass through unchanged, so this follows the VMM's schema as it grows.
    /// </summary>
    public byte[] MapVmmConfig(ReadOnlySpan<byte> json)
    {
        using var document = JsonDocument.Parse(json.ToArray());
        var output = new ArrayBufferWriter<byte>(json.Length + 256);
        using (var writer = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true }))
            Copy(writer, document.RootElement, propertyName: null);
        return output.WrittenSpan.ToArray();
    }

    private void Copy(Utf8JsonWriter w, JsonElement element, string? propertyName)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                w.WriteStartObject();
                foreach (var property in element.EnumerateObject())
                {
                    w.WritePropertyName(property.Name);
                    Copy(w, property.Value, property.Name);
                }
                w.WriteEndObject();
                break;
            case JsonValueKind.Array:
                w.WriteStartArray();
                foreach (var item in element.EnumerateArray())
                    Copy(w, item, propertyName);
                w.WriteEndArray();
                break;
            case JsonValueKind.String:
                var text = element.GetString()!;
                if (propertyName == "mac" && TryParseMac(text) is { } mac && Macs.TryGetValue(mac, out var newMac))
                    w.WriteStringValue(newMac.ToString());
                else if (text.StartsWith("file:/", StringComparison.Ordinal))
                    w.WriteStringValue("file:" + MapPath(text[5..]));
                else
                    w.WriteStringValue(text.StartsWith('/') ? MapPath(text) : text);
                break;
            case JsonValueKind.Number when propertyName == "guest_cid" && NewGuestCid is { } cid:
                w.WriteNumberValue(cid);
                break;
            default:
                element.WriteTo(w);
                break;
        }
    }

    private static MacAddress? TryParseMac(string text)
    {
        try
        {
            return MacAddress.Parse(text);
        }
        catch (Exception e) when (e is ValueFormatException or FormatException or ArgumentException)
        {
            return null;
        }
    }

    /// <summary>A vsock CID for a clone: 3 (the first guest CID) up to 2^32-2, never <paramref name="old"/>.</summary>
    public static ulong NewCid(ulong? old)
    {
        while (true)
        {
            var cid = (ulong)Random.Shared.NextInt64(3, uint.MaxValue);
            if (cid != old)
                return cid;
        }
    }
}
