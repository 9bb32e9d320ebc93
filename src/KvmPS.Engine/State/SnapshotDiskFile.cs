using System.Globalization;
using System.Text;
using System.Text.Json;
using KvmPS.Storage;

namespace KvmPS.State;

/// <summary>
/// One writable qcow2 disk of a snapshot: the internal qcow2 snapshot it got at the paused instant, with the creation
/// time and VM clock the image recorded, so a restore can tell that snapshot from another one with the same ID.
/// </summary>
public sealed record SnapshotDisk(string Path, string SnapshotId, DateTime CreatedUtc, ulong VmClockNs)
{
    public static SnapshotDisk From(string path, DiskSnapshotInfo info) => new(path, info.Id, info.CreatedUtc, info.VmClockNs);
}

/// <summary>
/// disks.json of a snapshot directory (docs/snapshots.md): which disk got which internal snapshot, and the restore
/// side that checks and reverts them before any vCPU runs.
/// </summary>
public static class SnapshotDiskFile
{
    public const string FileName = "disks.json";

    public static string Encode(IReadOnlyList<SnapshotDisk> disks)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartArray("disks");
            foreach (var d in disks)
            {
                w.WriteStartObject();
                w.WriteString("path", d.Path);
                w.WriteString("snapshot_id", d.SnapshotId);
                w.WriteString("created_utc", d.CreatedUtc.ToString("O", CultureInfo.InvariantCulture));
                w.WriteNumber("vm_clock_ns", d.VmClockNs);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>Reads DIR/disks.json; a snapshot without one has no disk snapshots. Errors name the file.</summary>
    public static IReadOnlyList<SnapshotDisk> Read(string directory)
    {
        string path = System.IO.Path.Combine(directory, FileName);
        if (!File.Exists(path)) return [];
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var list = new List<SnapshotDisk>();
            foreach (var e in doc.RootElement.GetProperty("disks").EnumerateArray())
            {
                string disk = e.GetProperty("path").GetString() ?? throw new FormatException("a disk has no \"path\"");
                string id = e.GetProperty("snapshot_id").GetString() ?? throw new FormatException($"disk {disk} has no \"snapshot_id\"");
                var created = DateTime.ParseExact(e.GetProperty("created_utc").GetString() ?? "", "O", CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);
                list.Add(new SnapshotDisk(disk, id, created, e.GetProperty("vm_clock_ns").GetUInt64()));
            }
            return list;
        }
        catch (Exception e) when (e is JsonException or FormatException or KeyNotFoundException or InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            throw new SnapshotException(path, $"the disk snapshot list cannot be read: {e.Message}", e);
        }
    }

    /// <summary>
    /// Checks that every disk still has its internal snapshot, unchanged (same creation time and VM clock), then
    /// reverts each disk to it. All are checked before any is reverted, so a refused restore changes no disk.
    /// A disk at fault is a <see cref="SnapshotException"/> naming the disk and the snapshot ID.
    /// </summary>
    public static void CheckAndRevert(IReadOnlyList<SnapshotDisk> disks)
    {
        foreach (var d in disks)
        {
            DiskSnapshotInfo? found;
            try { found = DiskSnapshots.Find(d.Path, d.SnapshotId); }
            catch (Exception e) when (e is DiskImageException or IOException or UnauthorizedAccessException)
            {
                throw new SnapshotException(d.Path, $"cannot check the disk's internal snapshot '{d.SnapshotId}': {e.Message}", e);
            }
            if (found is null)
                throw new SnapshotException(d.Path, $"the disk has lost its internal snapshot '{d.SnapshotId}' (the snapshot's disk state is gone)");
            // Found by ID or by name: another snapshot that merely carries the name, or one re-created under the ID, is not ours.
            if (found.Id != d.SnapshotId || found.CreatedUtc != d.CreatedUtc || found.VmClockNs != d.VmClockNs)
                throw new SnapshotException(d.Path,
                    $"the disk's internal snapshot '{d.SnapshotId}' is not the one this snapshot took (found ID '{found.Id}' created {found.CreatedUtc:O}, recorded ID '{d.SnapshotId}' created {d.CreatedUtc:O})");
        }
        foreach (var d in disks)
        {
            try { DiskSnapshots.Revert(d.Path, d.SnapshotId); }
            catch (Exception e) when (e is DiskImageException or IOException or UnauthorizedAccessException)
            {
                throw new SnapshotException(d.Path, $"cannot revert the disk to its internal snapshot '{d.SnapshotId}': {e.Message}", e);
            }
        }
    }
}
