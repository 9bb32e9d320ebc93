using System.Management.Automation;
using System.Text.Json;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// What a remote kvmps printed with --json, as PowerShell objects: the JSON fields as note properties in PowerShell
/// casing (name → Name, vm_name → VmName, dhcpRangeStart → DhcpRangeStart; nested objects the same way), plus
/// HostName, UserName and KeyFilePath, so that piping the object into another cmdlet stays on its host (they bind by
/// property name). The type name (KvmPS.RemoteNetwork, ...) says which kvmps answer it is.
/// </summary>
internal static class RemoteObject
{
    public const string Snapshot = "KvmPS.RemoteVmSnapshot";
    public const string Network = "KvmPS.RemoteNetwork";
    public const string StoragePool = "KvmPS.RemoteStoragePool";
    public const string StorageVolume = "KvmPS.RemoteStorageVolume";
    public const string ChangeResult = "KvmPS.RemoteChangeResult";
    public const string RemoveResult = "KvmPS.RemoteVmRemoveResult";
    public const string NetworkAdapter = "KvmPS.RemoteVmNetworkAdapter";
    public const string Firmware = "KvmPS.RemoteFirmware";
    public const string DvdDrive = "KvmPS.RemoteDvdDrive";
    public const string MemoryStatus = "KvmPS.RemoteVmMemoryStatus";
    public const string PciHostDevice = "KvmPS.RemotePciHostDevice";

    public static PSObject From(JsonElement value, RemoteHost remote, string typeName)
    {
        var result = Convert(value);
        result.TypeNames.Insert(0, typeName);
        // The host the object is on wins over a field of the same name (no kvmps answer has one at the top today).
        result.Properties.Remove("HostName");
        result.Properties.Add(new PSNoteProperty("HostName", remote.HostName));
        // Only when given: a null UserName would bind as "no user" and override a user@host in HostName.
        if (remote.UserName is not null)
            result.Properties.Add(new PSNoteProperty("UserName", remote.UserName));
        if (remote.KeyFilePath is not null)
            result.Properties.Add(new PSNoteProperty("KeyFilePath", remote.KeyFilePath));
        return result;
    }

    /// <summary>Each entry of an array answer (or the one object of an object answer).</summary>
    public static IEnumerable<PSObject> Each(JsonElement answer, RemoteHost remote, string typeName) =>
        answer.ValueKind == JsonValueKind.Array
            ? answer.EnumerateArray().Select(e => From(e, remote, typeName)).ToList()
            : [From(answer, remote, typeName)];

    private static PSObject Convert(JsonElement o)
    {
        var result = new PSObject();
        if (o.ValueKind != JsonValueKind.Object)
            return new PSObject(Value(o));
        foreach (var property in o.EnumerateObject())
            result.Properties.Add(new PSNoteProperty(Pascal(property.Name), Value(property.Value)));
        return result;
    }

    private static string Pascal(string name) =>
        string.Concat(name.Split('_', StringSplitOptions.RemoveEmptyEntries).Select(w => char.ToUpperInvariant(w[0]) + w[1..]));

    private static object? Value(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        // Boxed apart: a plain ?: would make every number a double (a count of 1 as 1.0, which binds and compares badly).
        JsonValueKind.Number => e.TryGetInt64(out var l) ? (object)l : e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        JsonValueKind.Array => e.EnumerateArray().Select(Value).ToArray(),
        _ => Convert(e),
    };
}
