using System.Management.Automation;
using System.Text.Json;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// A checkpoint on another host (Checkpoint-KvmVm -HostName -PassThru): the remote kvmps's JSON fields as note
/// properties in PowerShell casing (name → Name, vm_name → VmName), plus HostName, type name KvmPS.RemoteVmSnapshot.
/// </summary>
internal static class RemoteSnapshotObject
{
    public const string TypeName = "KvmPS.RemoteVmSnapshot";

    public static PSObject From(JsonElement snapshot, string hostName)
    {
        var result = new PSObject();
        result.TypeNames.Insert(0, TypeName);
        foreach (var property in snapshot.EnumerateObject())
            result.Properties.Add(new PSNoteProperty(Pascal(property.Name), Value(property.Value)));
        var host = hostName.Contains('@') ? hostName[(hostName.IndexOf('@') + 1)..] : hostName;
        result.Properties.Add(new PSNoteProperty("HostName", host));
        return result;
    }

    private static string Pascal(string snake) =>
        string.Concat(snake.Split('_', StringSplitOptions.RemoveEmptyEntries).Select(w => char.ToUpperInvariant(w[0]) + w[1..]));

    private static object? Value(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out var l) ? l : e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        _ => e.GetRawText(),
    };
}
