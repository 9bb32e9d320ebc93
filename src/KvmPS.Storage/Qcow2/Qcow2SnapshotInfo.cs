namespace KvmPS.Storage.Qcow2;

/// <summary>One internal snapshot, as listed by <c>qemu-img snapshot -l</c>.</summary>
public sealed record Qcow2SnapshotInfo(
    string Id,
    string Name,
    DateTimeOffset CreatedAt,
    ulong DiskSizeBytes,
    ulong VmStateSizeBytes);
