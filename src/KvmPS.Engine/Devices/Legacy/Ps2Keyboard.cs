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
