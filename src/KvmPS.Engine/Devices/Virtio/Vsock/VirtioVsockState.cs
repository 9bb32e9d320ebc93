using KvmPS.State;

namespace KvmPS.Devices.Virtio.Vsock;

/// <summary>
/// virtio-vsock keeps only the guest's CID across a snapshot: connections to host sockets cannot survive it. After a
/// restore the device tells the driver with VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (virtio 1.2, 5.10.6.6), and the
/// guest drops its connections and re-reads the CID.
/// </summary>
public sealed record VirtioVsockState(ulong GuestCid)
{
    public const ushort Version = 1;

    public void Write(StateWriter w) => w.WriteUInt64(GuestCid);

    public static VirtioVsockState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        var s = new VirtioVsockState(r.ReadUInt64());
        r.EnsureEnd();
        return s;
    }
}
