using System.Text.Json;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Snapshots;

/// <summary>The <c>memory</c> of a <c>snapshot.create</c>: everything, or the pages written since the previous snapshot.</summary>
public enum SnapshotMemoryMode { Full, Diff }

/// <summary>The arguments of the VMM's <c>snapshot.create</c> request (COMMON.md, "Agreed interfaces").</summary>
/// <param name="Path">Must not exist yet or be an empty directory.</param>
/// <param name="Resume">False: the VM stays paused after the snapshot (Save-KvmVm stops it next).</param>
/// <param name="SnapshotDisks">True (<c>disks:"snapshot"</c>): each qcow2 disk gets an internal snapshot <paramref name="SnapshotId"/>
/// at the same paused instant and a raw disk fails the request; false (<c>"ignore"</c>): disks are not touched.</param>
public sealed record SnapshotCreateRequest(string Path, SnapshotMemoryMode Memory, bool Resume, bool SnapshotDisks, string? SnapshotId);

/// <summary>The reply of <c>snapshot.create</c>.</summary>
public sealed record SnapshotCreateResult(
    string Path,
    string Memory,
    long MemoryBytes,
    long StateBytes,
    long DurationMs,
    long PausedMs,
    IReadOnlyList<DiskSnapshotRef> DiskSnapshots,
    string VmState);

/// <summary>
/// Sends <c>snapshot.create</c> over <see cref="VmmClient"/>'s generic request API (the request is not part of the
/// typed client yet). The reply may take long: writing memory is bounded by <see cref="ReplyTimeout"/>.
/// </summary>
public static class VmmSnapshotClient
{
    public const string Request = "snapshot.create";

    /// <summary>Time to allow for a snapshot of <paramref name="memoryBytes"/>: 30 s plus 1 s per 32 MiB (a slow shared disk writes ~40 MB/s).</summary>
    public static TimeSpan ReplyTimeout(long memoryBytes) => TimeSpan.FromSeconds(30 + memoryBytes / (32L << 20));

    public static SnapshotCreateResult CreateSnapshot(VmmClient client, SnapshotCreateRequest request, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(request);
        var result = client.Request(Request, w => WriteArguments(w, request), timeout);
        try
        {
            return Parse(result);
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or KeyNotFoundException)
        {
            throw new VmmProtocolException(client.SocketPath, $"reply to '{Request}' is not understood: {e.Message}", e);
        }
    }

    internal static void WriteArguments(Utf8JsonWriter w, SnapshotCreateRequest request)
    {
        w.WriteString("path", request.Path);
        w.WriteString("memory", request.Memory == SnapshotMemoryMode.Diff ? "diff" : "full");
        w.WriteBoolean("resume", request.Resume);
        w.WriteString("disks", request.SnapshotDisks ? "snapshot" : "ignore");
        if (request.SnapshotId is not null)
            w.WriteString("snapshot_id", request.SnapshotId);
    }

    internal static SnapshotCreateResult Parse(JsonElement r)
    {
        if (r.ValueKind != JsonValueKind.Object)
            throw new FormatException("the result is not an object");
        var disks = new List<DiskSnapshotRef>();
        if (r.TryGetProperty("disk_snapshots", out var array) && array.ValueKind == JsonValueKind.Array)
            foreach (var item in array.EnumerateArray())
                disks.Add(new DiskSnapshotRef(RequiredString(item, "path"), RequiredString(item, "snapshot_id")));
        return new SnapshotCreateResult(
            RequiredString(r, "path"),
            RequiredString(r, "memory"),
            Number(r, "memory_bytes"),
            Number(r, "state_bytes"),
            Number(r, "duration_ms"),
            Number(r, "paused_ms"),
            disks,
            RequiredString(r, "vm_state"));
    }

    private static string RequiredString(JsonElement e, string key) =>
        e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new FormatException($"'{key}' is missing or not a string");

    private static long Number(JsonElement e, string key) =>
        e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n) ? n : 0;
}
