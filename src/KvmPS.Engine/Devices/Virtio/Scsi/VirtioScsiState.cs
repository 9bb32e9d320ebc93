using KvmPS.State;

namespace KvmPS.Devices.Virtio.Scsi;

/// <summary>
/// virtio-scsi's own state (record "pci/SS/virtio-scsi", docs/snapshots.md): requests complete while the transport
/// is paused, so nothing is in flight. What remains is the drive — the medium (path and size, reopened and checked on
/// restore; null: none), tray, guest lock, the unit attention and media event the guest has not seen yet — the
/// driver-written cdb_size and sense_size, whether it accepted VIRTIO_SCSI_F_CHANGE, the PARAM_CHANGE events not yet
/// delivered, and counters.
/// </summary>
public sealed record VirtioScsiState(string? MediumPath, long MediumSizeBytes, bool TrayOpen, bool Locked, ushort UnitAttention,
    MediaEvent MediaEvent, uint CdbSize, uint SenseSize, bool ChangeEvents, IReadOnlyList<uint> Events, bool EventsMissed,
    ulong Requests, ulong BytesRead)
{
    public const ushort Version = 1;

    public void Write(StateWriter w)
    {
        w.WriteBool(MediumPath is not null);
        w.WriteString(MediumPath ?? "");
        w.WriteInt64(MediumSizeBytes);
        w.WriteBool(TrayOpen);
        w.WriteBool(Locked);
        w.WriteUInt16(UnitAttention);
        w.WriteByte((byte)MediaEvent);
        w.WriteUInt32(CdbSize);
        w.WriteUInt32(SenseSize);
        w.WriteBool(ChangeEvents);
        w.WriteByte((byte)Events.Count);
        foreach (var e in Events) w.WriteUInt32(e);
        w.WriteBool(EventsMissed);
        w.WriteUInt64(Requests);
        w.WriteUInt64(BytesRead);
    }

    public static VirtioScsiState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        bool hasMedium = r.ReadBool();
        string path = r.ReadString();
        long size = r.ReadInt64();
        bool tray = r.ReadBool(), locked = r.ReadBool();
        ushort ua = r.ReadUInt16();
        byte mediaEvent = r.ReadByte();
        if (mediaEvent > (byte)MediaEvent.MediaRemoval) throw r.Fail($"media event {mediaEvent} is not 0-3");
        uint cdb = r.ReadUInt32(), sense = r.ReadUInt32();
        if (cdb is < 6 or > VirtioScsi.MaxCdbOrSenseSize || sense > VirtioScsi.MaxCdbOrSenseSize) throw r.Fail($"cdb_size {cdb} or sense_size {sense} is out of range");
        bool change = r.ReadBool();
        int count = r.ReadByte();
        if (count > VirtioScsi.MaxQueuedEvents) throw r.Fail($"{count} queued events, more than {VirtioScsi.MaxQueuedEvents}");
        var events = new uint[count];
        for (int i = 0; i < count; i++) events[i] = r.ReadUInt32();
        var s = new VirtioScsiState(hasMedium ? path : null, size, tray, locked, ua, (MediaEvent)mediaEvent, cdb, sense, change, events,
            r.ReadBool(), r.ReadUInt64(), r.ReadUInt64());
        r.EnsureEnd();
        if (hasMedium && path.Length == 0) throw r.Fail("a medium with an empty path");
        return s;
    }
}
