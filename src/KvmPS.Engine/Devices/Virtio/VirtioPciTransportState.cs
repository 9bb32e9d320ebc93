using KvmPS.State;

namespace KvmPS.Devices.Virtio;

/// <summary>
/// The virtio PCI transport's common configuration: device status, feature selection and negotiation, configuration
/// generation, queue select, the configuration MSI-X vector, and whether the device was activated (DRIVER_OK seen).
/// The offered features are saved to refuse a snapshot taken with a device that offered something else.
/// </summary>
public sealed record VirtioPciTransportState(
    ulong OfferedFeatures, ushort QueueCount, uint DeviceFeatureSelect, uint DriverFeatureSelect, ulong DriverFeatures,
    ushort MsixConfigVector, ushort QueueSelect, byte Status, byte ConfigGeneration, byte Isr, bool Activated)
{
    public const ushort Version = 1;

    public void Write(StateWriter w)
    {
        w.WriteUInt64(OfferedFeatures);
        w.WriteUInt16(QueueCount);
        w.WriteUInt32(DeviceFeatureSelect);
        w.WriteUInt32(DriverFeatureSelect);
        w.WriteUInt64(DriverFeatures);
        w.WriteUInt16(MsixConfigVector);
        w.WriteUInt16(QueueSelect);
        w.WriteByte(Status);
        w.WriteByte(ConfigGeneration);
        w.WriteByte(Isr);
        w.WriteBool(Activated);
    }

    public static VirtioPciTransportState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        var s = new VirtioPciTransportState(r.ReadUInt64(), r.ReadUInt16(), r.ReadUInt32(), r.ReadUInt32(), r.ReadUInt64(),
            r.ReadUInt16(), r.ReadUInt16(), r.ReadByte(), r.ReadByte(), r.ReadByte(), r.ReadBool());
        r.EnsureEnd();
        return s;
    }
}

/// <summary>
/// One queue as the transport holds it: the driver's configuration (size, MSI-X vector, ring addresses, enabled)
/// and, once enabled, the device's position in the rings (<see cref="VirtQueueState"/>).
/// </summary>
public sealed record VirtioQueueConfigState(ushort Size, ushort MsixVector, bool Enabled, ulong Desc, ulong Driver, ulong Device, VirtQueueState? Queue)
{
    public const ushort Version = 1;

    public void Write(StateWriter w)
    {
        w.WriteUInt16(Size);
        w.WriteUInt16(MsixVector);
        w.WriteBool(Enabled);
        w.WriteUInt64(Desc);
        w.WriteUInt64(Driver);
        w.WriteUInt64(Device);
        w.WriteBool(Queue is not null);
        Queue?.Write(w);
    }

    public static VirtioQueueConfigState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        var s = new VirtioQueueConfigState(r.ReadUInt16(), r.ReadUInt16(), r.ReadBool(), r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64(),
            r.ReadBool() ? VirtQueueState.Read(r) : null);
        r.EnsureEnd();
        return s;
    }
}
