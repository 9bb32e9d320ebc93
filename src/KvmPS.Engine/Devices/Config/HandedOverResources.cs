namespace KvmPS.Devices.Config;

/// <summary>
/// The host resources a live upgrade's destination does not open itself, because the running VMM holds them and hands
/// them over open at the pause (docs/migration.md, "Local live upgrade"): the devices are built without them and take
/// the source's descriptors then. Which kinds depends on the stream's format version (3: disks; 4: disks, taps and vsock
/// listeners).
/// </summary>
[Flags]
public enum HandedOverResources
{
    None = 0,
    /// <summary>virtio-blk images (and their backing chains), their locks with them.</summary>
    DiskImages = 1,
    /// <summary>virtio-net taps: the same interface, its bridge port, its MTU and its queued frames.</summary>
    Taps = 2,
    /// <summary>virtio-vsock's listening Unix socket at <c>uds_path</c>, with the connections waiting in its backlog.</summary>
    VsockListeners = 4,
}
