using KvmPS.State;

namespace KvmPS.Devices.Legacy;

/// <summary>Port 0x80's last code (guests read it back) and its write count.</summary>
public sealed record PostCodeState(byte LastCode, long Writes)
{
    public const ushort Version = 1;

    public void Write(StateWriter w)
    {
        w.WriteByte(LastCode);
        w.WriteInt64(Writes);
    }

    public static PostCodeState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        var s = new PostCodeState(r.ReadByte(), r.ReadInt64());
        r.EnsureEnd();
        if (s.Writes < 0) throw r.Fail($"write count {s.Writes} is negative");
        return s;
    }
}
