using System.Text.Json.Serialization;

namespace KvmPS.Contract;

/// <summary>
/// Running or Paused, no migration under way: live-migrate the VM to a <c>kvmps-vmm --incoming</c> at
/// <see cref="Uri"/> (docs/migration.md). Replies at once; the work runs on its own thread and
/// <see cref="MigrateStatusRequest"/> follows it. The VM keeps running during pre-copy, is paused for at most about
/// <see cref="DowntimeMs"/> at the end, and the VMM exits (status 14) once the destination says it runs; any failure
/// before that resumes it here, untouched. Reply: <see cref="MigrateStatusReply"/>.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record MigrateRequest() : ControlRequest(Name)
{
    public const string Name = "migrate";
    /// <summary><c>tcp:HOST:PORT</c> or <c>unix:PATH</c>.</summary>
    public required string Uri { get; init; }
    /// <summary>The longest pause allowed at the hand-over (1 to 60000 ms).</summary>
    public int DowntimeMs { get; set; } = 300;
    /// <summary>Send no faster than this (at least 65536); absent: as fast as the link goes.</summary>
    public long? BandwidthBytesPerS { get; init; }
    /// <summary>Throttle the vCPUs when the guest dirties memory faster than the link sends it, instead of giving up.</summary>
    public bool AutoConverge { get; set; }
    /// <summary>
    /// Copy the disks too (no shared storage): every virtio-blk image's guest-visible contents go in the stream while
    /// the VM runs, with the blocks the guest writes meanwhile sent again; the destination writes them to fresh images
    /// at the paths of its own configuration (stream format version 2).
    /// </summary>
    public bool IncludeStorage { get; set; }
    /// <summary>
    /// The receiver's one-time token (<c>kvmps-vmm --incoming-token-file</c>): sent first, before the stream's header,
    /// so a receiver listening on a TCP port takes the stream from this source only. Absent: no token is sent.
    /// </summary>
    public string? Token { get; init; }
    /// <summary>
    /// 1: the connection to the destination came open with this request line (SCM_RIGHTS; a Unix stream socket the
    /// sender connected to the socket of a <c>unix:</c> <see cref="Uri"/>, nothing sent on it yet) and is used instead
    /// of connecting to the path, which a jailed VMM may neither see nor be allowed to use; absent or 0: connected by
    /// path. Only with a <c>unix:</c> URI; docs/vmm.md "Passing open files".
    /// </summary>
    public int? PassedFiles { get; init; }
}

/// <summary>Any state: the current (or last) migration's progress. Reply: <see cref="MigrateStatusReply"/>.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record MigrateStatusRequest() : ControlRequest(Name) { public const string Name = "migrate.status"; }

/// <summary>
/// A migration under way: stop it; the VM resumes on this host as it was (InvalidState without one; a migration
/// already past the destination's confirmation cannot be cancelled). Reply: <see cref="MigrateStatusReply"/>.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record MigrateCancelRequest() : ControlRequest(Name) { public const string Name = "migrate.cancel"; }

/// <summary>The phases a migration goes through (<see cref="MigrateStatusReply.Phase"/>).</summary>
public static class MigrationPhases
{
    /// <summary>No migration was asked for.</summary>
    public const string None = "none";
    /// <summary>Connecting, sending the configuration, waiting for the destination to build the machine.</summary>
    public const string Setup = "setup";
    /// <summary>Sending memory while the VM runs (round 0: all of it, then the pages dirtied meanwhile).</summary>
    public const string PreCopy = "precopy";
    /// <summary>The VM is paused: the last dirty pages and the device state go out.</summary>
    public const string StopCopy = "stop_copy";
    /// <summary>Everything sent; waiting for the destination to say it runs.</summary>
    public const string Handover = "handover";
    /// <summary>The destination runs the VM; this VMM exits.</summary>
    public const string Completed = "completed";
    /// <summary>Failed (see <c>error</c>); the VM runs on here.</summary>
    public const string Failed = "failed";
    /// <summary>Cancelled by <c>migrate.cancel</c>; the VM runs on here.</summary>
    public const string Cancelled = "cancelled";
}

/// <summary>Reply to <see cref="MigrateRequest"/>, <see cref="MigrateStatusRequest"/> and <see cref="MigrateCancelRequest"/>.</summary>
public sealed record MigrateStatusReply
{
    /// <summary>One of <see cref="MigrationPhases"/>.</summary>
    public required string Phase { get; init; }
    public string? Uri { get; init; }
    /// <summary>Pre-copy round: 0 sends all memory, each later one the pages dirtied during the one before.</summary>
    public int Round { get; init; }
    /// <summary>Bytes written to the connection so far (frames included).</summary>
    public long BytesSent { get; init; }
    public long SentPages { get; init; }
    /// <summary>Pages found dirty at the last harvest (still to send).</summary>
    public long DirtyPages { get; init; }
    /// <summary>How fast the guest dirtied memory during the last round.</summary>
    public long DirtyRateBytesPerS { get; init; }
    /// <summary>How fast the last round went out.</summary>
    public long TransferRateBytesPerS { get; init; }
    /// <summary>The pause the remaining dirty pages would take at the measured rate.</summary>
    public long ExpectedDowntimeMs { get; init; }
    public int DowntimeLimitMs { get; init; }
    /// <summary>With auto_converge: the share of time the vCPUs are held paused (0-99).</summary>
    public int ThrottlePercent { get; init; }
    /// <summary>Since the request (to now, or to the end).</summary>
    public long TotalMs { get; init; }
    /// <summary>Once paused for the hand-over: how long the VM has been (or was) paused.</summary>
    public long? DowntimeMs { get; init; }
    /// <summary>
    /// Local live upgrade: guest RAM (memfd-backed, <c>memfd</c> in the configuration) was handed to the destination as
    /// file descriptors over the Unix socket instead of being copied.
    /// </summary>
    public bool MemoryShared { get; init; }
    /// <summary>With include_storage: the disks' virtual sizes added up (what a full copy would be).</summary>
    public long DiskBytesTotal { get; init; }
    /// <summary>With include_storage: bytes of disk data sent so far (blocks that read as zero are not counted).</summary>
    public long DiskBytesSent { get; init; }
    /// <summary>With include_storage: bytes of disk blocks the guest wrote after their copy began, still to send.</summary>
    public long DiskDirtyBytes { get; init; }
    /// <summary>Why it failed (phase failed or cancelled).</summary>
    public string? Error { get; init; }
}
