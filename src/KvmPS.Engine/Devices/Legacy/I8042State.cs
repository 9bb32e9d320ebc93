using KvmPS.State;

namespace KvmPS.Devices.Legacy;

/// <summary>
/// The i8042's command byte, status, output buffer, half-done command and queued controller replies, with its
/// keyboard and mouse. Version 1 (before the PS/2 devices) had only the first four; it reads with the devices at
/// their power-on state.
/// </summary>
public sealed record I8042State(byte ControlByte, byte Status, byte? Output, byte PendingCommand)
{
    public const ushort Version = 2;
    private static readonly byte[] PendingCommands = [0, 0x60, 0xD1, 0xD2, 0xD3, 0xD4];

    public bool OutputAux { get; init; }
    public bool TranslateBreak { get; init; }
    public byte[] Controller { get; init; } = [];
    /// <summary>Per <see cref="Controller"/> byte: 1 when it shows as mouse data (0xD3 loop-back).</summary>
    public byte[] ControllerAux { get; init; } = [];
    public Ps2KeyboardState Keyboard { get; init; } = Ps2KeyboardState.PowerOn;
    public Ps2MouseState Mouse { get; init; } = Ps2MouseState.PowerOn;

    public void Write(StateWriter w)
    {
        w.WriteByte(ControlByte);
        w.WriteByte(Status);
        w.WriteBool(Output.HasValue);
        w.WriteByte(Output ?? 0);
        w.WriteByte(PendingCommand);
        w.WriteBool(OutputAux);
        w.WriteBool(TranslateBreak);
        w.WriteBytes(Controller);
        w.WriteBytes(ControllerAux);
        Keyboard.Write(w);
        Mouse.Write(w);
    }

    public static I8042State Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        byte control = r.ReadByte(), status = r.ReadByte();
        bool hasOutput = r.ReadBool();
        byte output = r.ReadByte();
        byte pending = r.ReadByte();
        if (Array.IndexOf(PendingCommands, pending) < 0) throw r.Fail($"pending command 0x{pending:x2} is not one the controller keeps");
        var s = new I8042State(control, status, hasOutput ? output : null, pending);
        if (version >= 2)
        {
            s = s with
            {
                OutputAux = r.ReadBool(),
                TranslateBreak = r.ReadBool(),
                Controller = r.ReadBytes(16),
                ControllerAux = r.ReadBytes(16),
                Keyboard = Ps2KeyboardState.Read(r),
                Mouse = Ps2MouseState.Read(r),
            };
            if (s.Controller.Length != s.ControllerAux.Length) throw r.Fail("controller replies and their port flags differ in number");
        }
        r.EnsureEnd();
        return s;
    }
}

/// <summary>The keyboard's queued bytes, scan-code set, scanning, LEDs, typematic setting and half-done command.</summary>
public sealed record Ps2KeyboardState(byte[] Queue, byte ScanSet, bool Scanning, byte Leds, byte Typematic, byte PendingCommand)
{
    public static readonly Ps2KeyboardState PowerOn = new([], 2, true, 0, 0x2B, 0);

    public void Write(StateWriter w)
    {
        w.WriteBytes(Queue);
        w.WriteByte(ScanSet); w.WriteBool(Scanning); w.WriteByte(Leds); w.WriteByte(Typematic); w.WriteByte(PendingCommand);
    }

    public static Ps2KeyboardState Read(StateReader r)
    {
        var s = new Ps2KeyboardState(r.ReadBytes(Ps2Keyboard.QueueLimit), r.ReadByte(), r.ReadBool(), r.ReadByte(), r.ReadByte(), r.ReadByte());
        if (s.ScanSet is not (1 or 2)) throw r.Fail($"keyboard scan-code set {s.ScanSet} is not 1 or 2");
        if (s.PendingCommand is not (0 or 0xED or 0xF0 or 0xF3)) throw r.Fail($"keyboard pending command 0x{s.PendingCommand:x2} is not one it keeps");
        return s;
    }
}

/// <summary>The mouse's queued bytes, modes, rates, ID, half-done command and buttons.</summary>
public sealed record Ps2MouseState(byte[] Queue, bool Reporting, bool Remote, bool Scaling21, byte SampleRate, byte Resolution, byte Id,
    byte PendingCommand, uint RateHistory, byte Buttons)
{
    public static readonly Ps2MouseState PowerOn = new([], false, false, false, 100, 2, 0, 0, 0, 0);

    public void Write(StateWriter w)
    {
        w.WriteBytes(Queue);
        w.WriteBool(Reporting); w.WriteBool(Remote); w.WriteBool(Scaling21);
        w.WriteByte(SampleRate); w.WriteByte(Resolution); w.WriteByte(Id); w.WriteByte(PendingCommand);
        w.WriteUInt32(RateHistory); w.WriteByte(Buttons);
    }

    public static Ps2MouseState Read(StateReader r)
    {
        var s = new Ps2MouseState(r.ReadBytes(Ps2Mouse.QueueLimit), r.ReadBool(), r.ReadBool(), r.ReadBool(), r.ReadByte(), r.ReadByte(), r.ReadByte(),
            r.ReadByte(), r.ReadUInt32(), r.ReadByte());
        if (s.Id is not (0 or 3)) throw r.Fail($"mouse ID {s.Id} is not 0 or 3");
        if (s.Resolution > 3) throw r.Fail($"mouse resolution {s.Resolution} is above 3");
        if (s.PendingCommand is not (0 or 0xF3 or 0xE8)) throw r.Fail($"mouse pending command 0x{s.PendingCommand:x2} is not one it keeps");
        if (s.RateHistory > 0xFFFFFF || s.Buttons > 7) throw r.Fail("mouse rate history or buttons out of range");
        return s;
    }
}
