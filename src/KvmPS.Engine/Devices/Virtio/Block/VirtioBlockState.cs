using KvmPS.State;

namespace KvmPS.Devices.Virtio.Block;

/// <summary>
/// virtio-blk's own state. Requests run to completion while the transport is paused, so nothing is in flight:
/// what remains is the disk the device presented (capacity, read-only, serial, discard — checked on restore so
/// that a snapshot is never attached to another disk) and its counters.
/// </summary>
public sealed record VirtioBlockState(ulong CapacitySectors, bool ReadOnly, string Serial, bool Discard,
    ulong Requests, ulong BytesRead, ulong BytesWritten, ulong FailedRequests)
{
    public const ushort Version = 1;

    public void Write(StateWriter w)
    {
        w.WriteUInt64(CapacitySectors);
        w.WriteBool(ReadOnly);
        w.WriteString(Serial);
        w.WriteBool(Discard);
        w.WriteUInt64(Requests);
        w.WriteUInt64(BytesRead);
        w.WriteUInt64(BytesWritten);
        w.WriteUInt64(FailedRequests);
    }

    public static VirtioBlockState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        var s = new VirtioBlockState(r.ReadUInt64(), r.ReadBool(), r.ReadString(VirtioBlock.IdBytes), r.ReadBool(),
            r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64());
        r.EnsureEnd();
        return s;
    }
}
