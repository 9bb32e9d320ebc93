namespace KvmPS.Management.Lifecycle;

/// <summary>How <see cref="VmManager.Move"/> migrates: the VMM's <c>migrate</c> arguments and the overall time limit.</summary>
public sealed record VmMoveOptions
{
    /// <summary>The longest pause allowed at the hand-over (1-60000 ms); null: the VMM's default (300 ms).</summary>
    public int? DowntimeMs { get; init; }

    /// <summary>Send no faster than this (at least 65536 bytes/s); null: as fast as the link goes.</summary>
    public long? BandwidthBytesPerSecond { get; init; }

    /// <summary>Throttle the vCPUs when the guest dirties memory faster than the link sends it.</summary>
    public bool AutoConverge { get; init; }

    /// <summary>
    /// Copy the disks live too (no shared storage): the images go into the destination store's disk folder of the VM
    /// (same file names); the source's images are kept here (docs/migration.md, "Moving with the disks").
    /// </summary>
    public bool IncludeStorage { get; init; }

    /// <summary>
    /// Send the stream through the ssh connection (a forwarded port) instead of straight to a TCP port the destination
    /// opens: for hosts a firewall keeps apart but for ssh.
    /// </summary>
    public bool Tunnel { get; init; }

    /// <summary>Direct TCP: the destination's address to listen on and be reached at; null: the address this host's ssh reached it by.</summary>
    public string? MigrationAddress { get; init; }

    /// <summary>How long the whole move may take before it is cancelled (default <see cref="VmManager.DefaultMoveTimeout"/>).</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>
    /// Cancels the move, as a timeout does, when signalled (Ctrl+C in pwsh or at the CLI): before the hand-over the VM
    /// runs on here and the destination is cleaned; once the VMM hands over, the move completes.
    /// </summary>
    public CancellationToken Cancellation { get; init; }
}

/// <summary>
/// One VM moved to another host (<see cref="VmManager.Move"/>): it runs there in kvmps-vmm <see cref="DestinationPid"/>
/// and is no longer in this host's store.
/// </summary>
public sealed record VmMoveResult(string Name, string DestinationHost, int SourcePid, int DestinationPid, TimeSpan Total, TimeSpan? Downtime, long BytesSent)
{
    /// <summary>With IncludeStorage: disk bytes sent (blocks that read as zero are not sent).</summary>
    public long DiskBytesSent { get; init; }

    /// <summary>With IncludeStorage: where this host's store kept the disk folder of the VM (null: no disk was in the store).</summary>
    public string? RetainedDisksDirectory { get; init; }

    /// <summary>How the stream went: <see cref="TcpTransport"/> (straight to the destination's port) or <see cref="TunnelTransport"/>.</summary>
    public string Transport { get; init; } = TcpTransport;

    /// <summary>Where the source VMM sent the stream (for the tunnel: the local port and the socket it reaches).</summary>
    public string? StreamUri { get; init; }

    /// <summary>The VM was paused, and stays paused on the destination.</summary>
    public bool Paused { get; init; }

    public const string TcpTransport = "tcp";
    public const string TunnelTransport = "ssh-tunnel";
}

/// <summary>
/// A move to another host failed before the destination ran the VM: the VM runs on here, untouched, and the
/// destination's half-made VM (definition, receiving VMM) was removed. <see cref="DestinationHost"/> names the host.
/// </summary>
public sealed class VmMoveException : VmManagementException
{
    public VmMoveException(string vmName, string destinationHost, string message, Exception? inner = null)
        : base(vmName, message, inner) => DestinationHost = destinationHost;

    public string DestinationHost { get; }
}
