using System.Text.Json;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Management.Remote;

/// <summary>
/// A VM on another host as its kvmps reported it (<c>kvmps vm list --json</c>): the fields of the CLI's JSON VM
/// object, and the host it is on.
/// </summary>
public sealed record RemoteVmInfo(
    string HostName,
    string Name,
    VmState State,
    string? StateReason,
    int? Pid,
    int VcpuCount,
    int VcpuMaximum,
    long MemoryStartupBytes,
    long MemoryMinimumBytes,
    long MemoryMaximumBytes,
    int? LiveVcpus,
    long? LiveMemoryBytes,
    TimeSpan? Uptime,
    bool Autostart,
    string Boot,
    string Notes,
    string Directory,
    string SerialLogPath)
{
    /// <summary>Reads one VM object; a missing or mistyped field is a <see cref="RemoteProtocolException"/> naming it.</summary>
    public static RemoteVmInfo FromJson(string hostName, JsonElement vm)
    {
        if (vm.ValueKind != JsonValueKind.Object)
            throw new RemoteProtocolException(hostName, $"expected a VM object, got {vm.ValueKind}");
        var stateText = String(hostName, vm, "state");
        if (!Enum.TryParse<VmState>(stateText, ignoreCase: false, out var state))
            throw new RemoteProtocolException(hostName, $"unknown VM state '{stateText}' (the remote kvmps may be newer)");
        return new RemoteVmInfo(
            hostName,
            String(hostName, vm, "name"),
            state,
            OptionalString(hostName, vm, "stateReason"),
            (int?)OptionalNumber(hostName, vm, "pid"),
            (int)Number(hostName, vm, "vcpuCount"),
            (int)Number(hostName, vm, "vcpuMaximum"),
            Number(hostName, vm, "memoryStartupBytes"),
            Number(hostName, vm, "memoryMinimumBytes"),
            Number(hostName, vm, "memoryMaximumBytes"),
            (int?)OptionalNumber(hostName, vm, "liveVcpus"),
            OptionalNumber(hostName, vm, "liveMemoryBytes"),
            vm.TryGetProperty("uptimeSeconds", out var up) && up.ValueKind == JsonValueKind.Number ? TimeSpan.FromSeconds(up.GetDouble()) : null,
            vm.TryGetProperty("autostart", out var auto) && auto.ValueKind == JsonValueKind.True,
            OptionalString(hostName, vm, "boot") ?? "",
            OptionalString(hostName, vm, "notes") ?? "",
            OptionalString(hostName, vm, "directory") ?? "",
            OptionalString(hostName, vm, "serialLog") ?? "");
    }

    private static string String(string host, JsonElement vm, string name) =>
        OptionalString(host, vm, name) ?? throw new RemoteProtocolException(host, $"the VM object has no '{name}'");

    private static string? OptionalString(string host, JsonElement vm, string name) =>
        !vm.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind == JsonValueKind.String ? value.GetString()
        : throw new RemoteProtocolException(host, $"'{name}' is {value.ValueKind}, expected a string");

    private static long Number(string host, JsonElement vm, string name) =>
        OptionalNumber(host, vm, name) ?? throw new RemoteProtocolException(host, $"the VM object has no '{name}'");

    private static long? OptionalNumber(string host, JsonElement vm, string name) =>
        !vm.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var n) ? n
        : throw new RemoteProtocolException(host, $"'{name}' is {value.ValueKind}, expected an integer");
}
