using System.Buffers;
using System.Globalization;
using System.Text.Json;

namespace KvmPS.Management.Snapshots;

/// <summary>
/// Reads and writes <c>snapshot.json</c> and <c>saved.json</c>. Hand-written over Utf8JsonWriter/JsonDocument (the CLI
/// is NativeAOT). Every defect of a file is a <see cref="SnapshotMetadataCorruptException"/> naming it.
/// </summary>
internal static class SnapshotMetadataJson
{
    /// <summary>Version of the metadata files; a newer one is refused rather than half understood.</summary>
    public const int FormatVersion = 1;

    private static readonly string[] s_checkpointStates = ["Running", "Paused", "Off"];
    private static readonly string[] s_savedStates = ["Running", "Paused"];

    public static byte[] Serialize(VmSnapshot snapshot) => Write(w =>
    {
        w.WriteNumber("format_version", FormatVersion);
        w.WriteString("vm_name", snapshot.VmName);
        w.WriteString("name", snapshot.Name);
        w.WriteString("id", snapshot.Id);
        w.WriteString("creation_time_utc", snapshot.CreationTimeUtc.ToString("O", CultureInfo.InvariantCulture));
        if (snapshot.ParentId is null) w.WriteNull("parent_id"); else w.WriteString("parent_id", snapshot.ParentId);
        w.WriteNumber("size_bytes", snapshot.SizeBytes);
        w.WriteBoolean("includes_memory", snapshot.IncludesMemory);
        w.WriteString("vm_state", snapshot.VmState);
        w.WriteStartArray("disk_snapshots");
        foreach (var disk in snapshot.DiskSnapshots)
        {
            w.WriteStartObject();
            w.WriteString("path", disk.Path);
            w.WriteString("snapshot_id", disk.SnapshotId);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    });

    public static byte[] Serialize(VmSavedState saved) => Write(w =>
    {
        w.WriteNumber("format_version", FormatVersion);
        w.WriteString("vm_name", saved.VmName);
        w.WriteString("creation_time_utc", saved.CreationTimeUtc.ToString("O", CultureInfo.InvariantCulture));
        w.WriteNumber("size_bytes", saved.SizeBytes);
        w.WriteString("vm_state", saved.VmState);
    });

    /// <summary>Reads a checkpoint's metadata; <paramref name="expectedId"/> is its folder's name, which the id must match.</summary>
    public static VmSnapshot ReadSnapshot(string vmName, string path, string expectedId)
    {
        using var document = Open(vmName, path);
        var root = document.RootElement;
        var reader = new FieldReader(vmName, path, root);
        reader.CheckVersion();
        var id = reader.String("id");
        if (!string.Equals(id, expectedId, StringComparison.Ordinal))
            throw reader.Fail($"its id '{id}' does not match its folder '{expectedId}'");
        var disks = new List<DiskSnapshotRef>();
        if (!root.TryGetProperty("disk_snapshots", out var array) || array.ValueKind != JsonValueKind.Array)
            throw reader.Fail("'disk_snapshots' is missing or not an array");
        var index = 0;
        foreach (var item in array.EnumerateArray())
        {
            var itemReader = new FieldReader(vmName, path, item, $"disk_snapshots[{index++}].");
            disks.Add(new DiskSnapshotRef(itemReader.String("path"), itemReader.String("snapshot_id")));
        }
        var snapshot = new VmSnapshot
        {
            VmName = reader.String("vm_name"),
            Name = reader.String("name"),
            Id = id,
            CreationTimeUtc = reader.TimeUtc("creation_time_utc"),
            ParentId = reader.OptionalString("parent_id"),
            SizeBytes = reader.NonNegative("size_bytes"),
            IncludesMemory = reader.Bool("includes_memory"),
            VmState = reader.OneOf("vm_state", s_checkpointStates),
            DiskSnapshots = disks,
            Directory = Path.GetDirectoryName(path)!,
        };
        if (!string.Equals(snapshot.VmName, vmName, StringComparison.Ordinal))
            throw reader.Fail($"it belongs to VM '{snapshot.VmName}'");
        if (snapshot.IncludesMemory && !System.IO.Directory.Exists(snapshot.VmmDirectory))
            throw reader.Fail($"it includes memory but its VMM snapshot folder '{snapshot.VmmDirectory}' is missing");
        return snapshot;
    }

    public static VmSavedState ReadSaved(string vmName, string path)
    {
        using var document = Open(vmName, path);
        var reader = new FieldReader(vmName, path, document.RootElement);
        reader.CheckVersion();
        var saved = new VmSavedState
        {
            VmName = reader.String("vm_name"),
            CreationTimeUtc = reader.TimeUtc("creation_time_utc"),
            SizeBytes = reader.NonNegative("size_bytes"),
            VmState = reader.OneOf("vm_state", s_savedStates),
            Directory = Path.GetDirectoryName(path)!,
        };
        if (!string.Equals(saved.VmName, vmName, StringComparison.Ordinal))
            throw reader.Fail($"it belongs to VM '{saved.VmName}'");
        if (!System.IO.Directory.Exists(saved.VmmDirectory))
            throw reader.Fail($"its VMM snapshot folder '{saved.VmmDirectory}' is missing");
        return saved;
    }

    private static JsonDocument Open(string vmName, string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new SnapshotMetadataCorruptException(vmName, path, "the file is missing", e);
        }
        try
        {
            var document = JsonDocument.Parse(bytes);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                document.Dispose();
                throw new SnapshotMetadataCorruptException(vmName, path, "it is not a JSON object");
            }
            return document;
        }
        catch (JsonException e)
        {
            throw new SnapshotMetadataCorruptException(vmName, path, $"it is not valid JSON ({e.Message})", e);
        }
    }

    private static byte[] Write(Action<Utf8JsonWriter> body)
    {
        var output = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        return output.WrittenSpan.ToArray();
    }

    private readonly struct FieldReader(string vmName, string path, JsonElement element, string prefix = "")
    {
        public SnapshotMetadataCorruptException Fail(string reason) => new(vmName, path, reason);

        public void CheckVersion()
        {
            if (!element.TryGetProperty("format_version", out var v) || v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var version))
                throw Fail("'format_version' is missing or not a number");
            if (version > FormatVersion)
                throw Fail($"it has format version {version}; this KvmPS reads up to {FormatVersion} (written by a newer KvmPS)");
            if (version < 1)
                throw Fail($"format version {version} is not valid");
        }

        public string String(string key) =>
            element.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } s
                ? s : throw Fail($"'{prefix}{key}' is missing, empty or not a string");

        public string? OptionalString(string key)
        {
            if (!element.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null)
                return null;
            return v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } s ? s : throw Fail($"'{prefix}{key}' is not a non-empty string or null");
        }

        public bool Bool(string key) => element.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? v.GetBoolean() : throw Fail($"'{prefix}{key}' is missing or not true/false");

        public long NonNegative(string key) =>
            element.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n) && n >= 0
                ? n : throw Fail($"'{prefix}{key}' is missing or not a non-negative whole number");

        public DateTime TimeUtc(string key)
        {
            var text = String(key);
            return DateTime.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var time)
                ? DateTime.SpecifyKind(time, DateTimeKind.Utc)
                : throw Fail($"'{prefix}{key}' value '{text}' is not a date and time");
        }

        public string OneOf(string key, string[] allowed)
        {
            var text = String(key);
            return allowed.Contains(text, StringComparer.Ordinal) ? text : throw Fail($"'{prefix}{key}' value '{text}' is not one of {string.Join(", ", allowed)}");
        }
    }
}
