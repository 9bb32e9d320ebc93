using KvmPS.State;

namespace KvmPS.Devices.Virtio.Mem;

/// <summary>
/// The device's geometry (checked against the machine on restore), the requested size, the plugged-block bitmap and
/// whether a configuration change is still owed to the driver. The plugged blocks' contents are guest RAM: they are
/// in the memory file (the hot-plug region is one of its regions; unplugged blocks were discarded, so they are holes).
/// </summary>
public sealed record VirtioMemState(
    ulong BlockSizeBytes, ulong RegionAddress, ulong RegionBytes, ulong RequestedBytes, bool DriverOk, bool ConfigDirty, ulong[] PluggedBitmap)
{
    public const ushort Version = 1;
    /// <summary>Bitmap words a record may hold: 1 PiB of 2 MiB blocks.</summary>
    private const int MaxBitmapWords = 1 << 23;

    public void Write(StateWriter w)
    {
        w.WriteUInt64(BlockSizeBytes);
        w.WriteUInt64(RegionAddress);
        w.WriteUInt64(RegionBytes);
        w.WriteUInt64(RequestedBytes);
        w.WriteBool(DriverOk);
        w.WriteBool(ConfigDirty);
        w.WriteUInt32((uint)PluggedBitmap.Length);
        foreach (ulong word in PluggedBitmap) w.WriteUInt64(word);
    }

    public static VirtioMemState Read(StateReader r, ushort version)
    {
        Devices.DeviceState.EnsureVersion(r, version, Version);
        ulong blockSize = r.ReadUInt64(), address = r.ReadUInt64(), regionBytes = r.ReadUInt64(), requested = r.ReadUInt64();
        bool driverOk = r.ReadBool(), configDirty = r.ReadBool();
        uint words = r.ReadUInt32();
        if (words > MaxBitmapWords || words * 8L > r.Remaining) throw r.Fail($"a plugged-block bitmap of {words} words (the record has {r.Remaining} bytes left)");
        var bitmap = new ulong[words];
        for (int i = 0; i < bitmap.Length; i++) bitmap[i] = r.ReadUInt64();
        r.EnsureEnd();
        return new VirtioMemState(blockSize, address, regionBytes, requested, driverOk, configDirty, bitmap);
    }
}
