namespace KvmPS.Devices.Legacy;

/// <summary>
/// A PS/2 mouse on the i8042's aux port: stream mode packets of 3 bytes (4 with the IntelliMouse wheel, which a guest
/// turns on with the sample-rate sequence 200, 100, 80), and the mouse command set. PS/2 mice are relative only: the
/// absolute pointer of a viewer becomes moves from its previous position.
/// </summary>
internal sealed class Ps2Mouse
{
    public const int QueueLimit = 256;
    private const byte Ack = 0xFA, Resend = 0xFE;

    private readonly Queue<byte> _queue = new();
    public bool Reporting { get; private set; }
    public bool Remote { get; private set; }
    public bool Scaling21 { get; private set; }
    public byte SampleRate { get; private set; } = 100;
    public byte Resolution { get; private set; } = 2;
    public byte Id { get; private set; }
    public byte PendingCommand { get; private set; }
    /// <summary>The last three sample rates set, newest in the low byte (the IntelliMouse knock).</summary>
    public uint RateHistory { get; private set; }
    public byte Buttons { get; private set; }

    public int Count => _queue.Count;
    public byte Dequeue() => _queue.Dequeue();

    public void Receive(byte value)
    {
        if (PendingCommand != 0)
        {
            byte command = PendingCommand;
            PendingCommand = 0;
            if (command == 0xF3)
            {
                SampleRate = value;
                RateHistory = ((RateHistory << 8) | value) & 0xFFFFFF;
                if (RateHistory == 0xC86450) Id = 3; // 200, 100, 80: IntelliMouse with a wheel
                Push(Ack);
                return;
            }
            if (command == 0xE8 && value <= 3) { Resolution = value; Push(Ack); return; }
            if (command == 0xE8) { Push(Resend); return; }
        }
        switch (value)
        {
            case 0xFF: // reset: self-test passed, ID 0
                Defaults();
                _queue.Clear();
                Id = 0;
                RateHistory = 0;
                Push(Ack); Push(0xAA); Push(0x00);
                break;
            case 0xF6: Defaults(); Push(Ack); break;
            case 0xF5: Reporting = false; Push(Ack); break;
            case 0xF4: Reporting = true; Push(Ack); break;
            case 0xF3 or 0xE8: PendingCommand = value; Push(Ack); break;
            case 0xF2: Push(Ack); Push(Id); break;
            case 0xE6: Scaling21 = false; Push(Ack); break;
            case 0xE7: Scaling21 = true; Push(Ack); break;
            case 0xE9: // status: mode, enable, scaling, buttons; resolution; sample rate
                Push(Ack);
                Push((byte)((Remote ? 0x40 : 0) | (Reporting ? 0x20 : 0) | (Scaling21 ? 0x10 : 0)
                    | ((Buttons & 1) << 2) | (Buttons & 2) | ((Buttons & 4) >> 2)));
                Push(Resolution); Push(SampleRate);
                break;
            case 0xEA: Remote = false; Push(Ack); break;
            case 0xF0: Remote = true; Push(Ack); break;
            case 0xEB: Push(Ack); Packet(0, 0, 0); break; // read data (remote mode): one packet, no movement since
            case 0xEC or 0xEE: Push(Ack); break;          // wrap mode on/off: acknowledged, not echoed
            default: Push(Resend); break;
        }
    }

    private void Defaults()
    {
        Reporting = false;
        Remote = false;
        Scaling21 = false;
        SampleRate = 100;
        Resolution = 2;
    }

    /// <summary>
    /// A move of (<paramref name="dx"/>, <paramref name="dy"/>) (y up, as PS/2 counts) with RFB buttons (bit 0 left,
    /// 1 middle, 2 right) and wheel steps (<paramref name="wheel"/> negative up); only in stream mode with reporting on.
    /// Moves beyond a packet's 9-bit range go out as several packets.
    /// </summary>
    public void Move(int dx, int dy, byte buttons, int wheel)
    {
        Buttons = (byte)(buttons & 7);
        if (!Reporting || Remote) return;
        do
        {
            int x = Math.Clamp(dx, -255, 255), y = Math.Clamp(dy, -255, 255);
            int z = Id == 3 ? Math.Clamp(wheel, -8, 7) : 0;
            if (_queue.Count + 4 > QueueLimit) return; // the guest is not reading: drop moves rather than grow
            Packet(x, y, z);
            dx -= x; dy -= y; wheel -= z;
        } while (dx != 0 || dy != 0 || (Id == 3 && wheel != 0));
    }

    private void Packet(int dx, int dy, int dz)
    {
        // Byte 0: left, right, middle, always-one, X sign, Y sign (no overflow: moves are split instead).
        byte b0 = (byte)(0x08 | (Buttons & 1) | ((Buttons & 4) >> 1) | ((Buttons & 2) << 1) | (dx < 0 ? 0x10 : 0) | (dy < 0 ? 0x20 : 0));
        Push(b0); Push((byte)dx); Push((byte)dy);
        if (Id == 3) Push((byte)(sbyte)dz);
    }

    private void Push(byte b)
    {
        if (_queue.Count < QueueLimit) _queue.Enqueue(b);
    }

    public Ps2MouseState Capture() => new(_queue.ToArray(), Reporting, Remote, Scaling21, SampleRate, Resolution, Id, PendingCommand, RateHistory, Buttons);

    public void Restore(Ps2MouseState s)
    {
        _queue.Clear();
        foreach (byte b in s.Queue) _queue.Enqueue(b);
        (Reporting, Remote, Scaling21, SampleRate, Resolution, Id, PendingCommand, RateHistory, Buttons) =
            (s.Reporting, s.Remote, s.Scaling21, s.SampleRate, s.Resolution, s.Id, s.PendingCommand, s.RateHistory, s.Buttons);
    }
}
