namespace KvmPS.Devices.Legacy;

/// <summary>
/// A PS/2 (AT) keyboard behind the i8042: its command set (reset, identify, scan-code set, LEDs, typematic,
/// enable/disable, echo) and a queue of bytes for the controller. Scan codes come in set 2 by default (the
/// controller translates to set 1 when its command byte says so) or set 1 when the guest selects it.
/// Not thread-safe: the <see cref="I8042"/> holds its lock around every call.
/// </summary>
internal sealed class Ps2Keyboard
{
    public const int QueueLimit = 256;
    public const byte Ack = 0xFA, Resend = 0xFE, SelfTestPassed = 0xAA, EchoReply = 0xEE;

    private readonly Queue<byte> _queue = new();
    public byte ScanSet { get; private set; } = 2;
    public bool Scanning { get; private set; } = true;
    public byte Leds { get; private set; }
    public byte Typematic { get; private set; } = 0x2B; // 10.9 characters a second after 500 ms, the power-on default
    /// <summary>A command waiting for its argument byte (0xED, 0xF0, 0xF3), or 0.</summary>
    public byte PendingCommand { get; private set; }

    public int Count => _queue.Count;
    public byte Peek() => _queue.Peek();
    public byte Dequeue() => _queue.Dequeue();

    /// <summary>A byte from the controller (the guest wrote port 0x60).</summary>
    public void Receive(byte value)
    {
        if (PendingCommand != 0 && TakeArgument(value)) return;
        PendingCommand = 0;
        switch (value)
        {
            case 0xFF: // reset: self-test passed
                Defaults();
                _queue.Clear();
                ScanSet = 2;
                Leds = 0;
                Scanning = true;
                Push(Ack); Push(SelfTestPassed);
                break;
            case 0xF2: Push(Ack); Push(0xAB); Push(0x83); break; // identify: an MF2 keyboard
            case 0xED or 0xF0 or 0xF3: PendingCommand = value; Push(Ack); break;
            case 0xF4: _queue.Clear(); Scanning = true; Push(Ack); break;
            case 0xF5: Defaults(); Scanning = false; Push(Ack); break;
            case 0xF6: Defaults(); Push(Ack); break;
            case 0xEE: Push(EchoReply); break;
            case >= 0xF7 and <= 0xFD: Push(Ack); break; // set 3 key attributes: acknowledged, without effect in sets 1 and 2
            case 0xFE: Push(Ack); break;
            default: Push(Resend); break;
        }
    }

    /// <summary>The argument of a pending command; false when <paramref name="value"/> is a new command instead.</summary>
    private bool TakeArgument(byte value)
    {
        switch (PendingCommand)
        {
            case 0xED when value <= 0x07: Leds = value; break;
            case 0xF3 when value <= 0x7F: Typematic = value; break;
            case 0xF0 when value == 0: PendingCommand = 0; Push(Ack); Push(ScanSet); return true;
            case 0xF0 when value is 1 or 2: ScanSet = value; break;
            case 0xF0 when value == 3: PendingCommand = 0; Push(Resend); return true; // set 3 is not offered
            default: return false;
        }
        PendingCommand = 0;
        Push(Ack);
        return true;
    }

    private void Defaults() => Typematic = 0x2B;

    /// <summary>A key pressed or released: its codes in the current set, if the keyboard is scanning and has room.</summary>
    public void Key(Ps2Keymap.Key key, bool down)
    {
        if (!Scanning) return;
        byte[] codes = Ps2Keymap.Codes(key, down, ScanSet);
        if (_queue.Count + codes.Length > QueueLimit) return; // a full buffer drops keys, as a real keyboard does
        foreach (byte b in codes) _queue.Enqueue(b);
    }

    private void Push(byte b)
    {
        if (_queue.Count < QueueLimit) _queue.Enqueue(b);
    }

    public Ps2KeyboardState Capture() => new(_queue.ToArray(), ScanSet, Scanning, Leds, Typematic, PendingCommand);

    public void Restore(Ps2KeyboardState s)
    {
        _queue.Clear();
        foreach (byte b in s.Queue) _queue.Enqueue(b);
        (ScanSet, Scanning, Leds, Typematic, PendingCommand) = (s.ScanSet, s.Scanning, s.Leds, s.Typematic, s.PendingCommand);
    }
}

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
