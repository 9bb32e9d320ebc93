using KvmPS.State;

namespace KvmPS.Devices.Virtio;

/// <summary>
/// The device side of one split virtqueue: where the rings are, and how far the device has got in them (the next
/// available slot it will read, its used index, and the EVENT_IDX interrupt-suppression state).
/// </summary>
public sealed record VirtQueueState(
    ushort Size, ulong DescTable, ulong AvailRing, ulong UsedRing, bool EventIdx, bool IndirectAllowed,
    ushort NextAvailIndex, ushort NextUsedIndex, ushort SignalledUsedIndex, bool SignalledValid, string? Error)
{
    public void Write(StateWriter w)
    {
        w.WriteUInt16(Size);
        w.WriteUInt64(DescTable);
        w.WriteUInt64(AvailRing);
        w.WriteUInt64(UsedRing);
        w.WriteBool(EventIdx);
        w.WriteBool(IndirectAllowed);
        w.WriteUInt16(NextAvailIndex);
        w.WriteUInt16(NextUsedIndex);
        w.WriteUInt16(SignalledUsedIndex);
        w.WriteBool(SignalledValid);
        w.WriteBool(Error is not null);
        if (Error is not null) w.WriteString(Error);
    }

    public static VirtQueueState Read(StateReader r) => new(
        r.ReadUInt16(), r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64(), r.ReadBool(), r.ReadBool(),
        r.ReadUInt16(), r.ReadUInt16(), r.ReadUInt16(), r.ReadBool(), r.ReadBool() ? r.ReadString() : null);
}
