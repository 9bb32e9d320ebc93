using KvmPS.State;

namespace KvmPS.Devices.Legacy;

/// <summary>
/// fw_cfg's access state: the selected item, the read offset in it and the DMA address high half. The items
/// themselves come from the configuration; their file names are saved to refuse a snapshot of other firmware.
/// </summary>
public sealed record FwCfgState(ushort Selector, int Offset, uint DmaHigh, string[] FileNames)
{
    public const ushort Version = 1;
    private const int MaxFiles = 0x4000;

    public void Write(StateWriter w)
    {
        w.WriteUInt16(Selector);
        w.WriteInt32(Offset);
        w.WriteUInt32(DmaHigh);
        w.WriteUInt32((uint)FileNames.Length);
        foreach (var n in FileNames) w.WriteString(n);
    }

    public static FwCfgState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        ushort selector = r.ReadUInt16();
        int offset = r.ReadInt32();
        uint high = r.ReadUInt32();
        uint count = r.ReadUInt32();
        if (count > MaxFiles) throw r.Fail($"{count} fw_cfg files (at most {MaxFiles})");
        var names = new string[count];
        for (int i = 0; i < names.Length; i++) names[i] = r.ReadString(FwCfg.MaxFileNameLength);
        r.EnsureEnd();
        if (offset < 0) throw r.Fail($"read offset {offset} is negative");
        return new FwCfgState(selector, offset, high, names);
    }
}
