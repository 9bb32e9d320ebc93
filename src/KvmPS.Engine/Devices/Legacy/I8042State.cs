using KvmPS.State;

namespace KvmPS.Devices.Legacy;

/// <summary>The keyboard controller's command byte, status, pending output byte and half-done command.</summary>
public sealed record I8042State(byte ControlByte, byte Status, byte? Output, byte PendingCommand)
{
    public const ushort Version = 1;

    public void Write(StateWriter w)
    {
        w.WriteByte(ControlByte);
        w.WriteByte(Status);
        w.WriteBool(Output.HasValue);
        w.WriteByte(Output ?? 0);
        w.WriteByte(PendingCommand);
    }

    public static I8042State Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        byte control = r.ReadByte(), status = r.ReadByte();
        bool hasOutput = r.ReadBool();
        byte output = r.ReadByte();
        byte pending = r.ReadByte();
        r.EnsureEnd();
        if (pending is not (0 or 0x60)) throw r.Fail($"pending command 0x{pending:x2} is not one the controller keeps");
        return new I8042State(control, status, hasOutput ? output : null, pending);
    }
}
