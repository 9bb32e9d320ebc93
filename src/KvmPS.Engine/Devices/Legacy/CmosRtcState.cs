using KvmPS.State;

namespace KvmPS.Devices.Legacy;

/// <summary>The CMOS index register and its 128 bytes. The time of day is not saved: it is read from the host clock.</summary>
public sealed record CmosRtcState(byte Index, byte[] Cmos)
{
    public const ushort Version = 1;
    public const int CmosBytes = 128;

    public void Write(StateWriter w)
    {
        w.WriteByte(Index);
        w.WriteFixed(Cmos);
    }

    public static CmosRtcState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        byte index = r.ReadByte();
        var cmos = new byte[CmosBytes];
        r.ReadFixed(cmos);
        r.EnsureEnd();
        if (index >= CmosBytes) throw r.Fail($"CMOS index 0x{index:x2} is beyond the {CmosBytes} bytes");
        return new CmosRtcState(index, cmos);
    }
}
