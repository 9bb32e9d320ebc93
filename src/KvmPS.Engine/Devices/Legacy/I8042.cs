using KvmPS.State;
using KvmPS.Vmm.Vnc;

namespace KvmPS.Devices.Legacy;

/// <summary>
/// An i8042 PS/2 controller with a keyboard (IRQ 1) and a mouse on the aux port (IRQ 12), as Linux's i8042/atkbd/
/// psmouse drivers and SeaBIOS's ps2port use it: the command byte (interrupt enables, port disables, set 2 → set 1
/// translation), self-tests, port enables, writes to either device or into the output buffer (0xD2/0xD3), and 0xFE,
/// which pulses the CPU reset line. VNC viewers type and point through <see cref="IVncInput"/>.
/// </summary>
public sealed class I8042 : IBusDevice, IPersistent, IPausable, IVncInput
{
    public const ushort DataPort = 0x60, CommandPort = 0x64;
    public const byte KeyboardIrq = 1, MouseIrq = 12;
    private const byte CMD_READ_CTR = 0x20, CMD_WRITE_CTR = 0x60, CMD_AUX_DISABLE = 0xA7, CMD_AUX_ENABLE = 0xA8, CMD_AUX_TEST = 0xA9,
        CMD_SELF_TEST = 0xAA, CMD_KBD_TEST = 0xAB, CMD_KBD_DISABLE = 0xAD, CMD_KBD_ENABLE = 0xAE, CMD_WRITE_OUTPUT_PORT = 0xD1,
        CMD_KBD_LOOP = 0xD2, CMD_AUX_LOOP = 0xD3, CMD_AUX_SEND = 0xD4, CMD_PULSE_RESET = 0xFE;
    private const byte STATUS_OBF = 0x01, STATUS_SYS = 0x04, STATUS_CMD = 0x08, STATUS_UNLOCKED = 0x10, STATUS_AUXDATA = 0x20;
    internal const byte CTR_KBDINT = 0x01, CTR_AUXINT = 0x02, CTR_SYS = 0x04, CTR_KBDDIS = 0x10, CTR_AUXDIS = 0x20, CTR_XLATE = 0x40;
    /// <summary>Controller replies (self-tests, the command byte) waiting for the guest, at most.</summary>
    private const int ControllerQueueLimit = 16;

    private readonly object _lock = new();
    private readonly IMachineControl _machine;
    private readonly IInterruptLine? _keyboardIrq, _mouseIrq;
    private readonly Ps2Keyboard _keyboard = new();
    private readonly Ps2Mouse _mouse = new();
    private readonly Queue<(byte Value, bool Aux)> _controller = new();
    private byte _controlByte = CTR_KBDINT | CTR_SYS | CTR_XLATE, _status = STATUS_SYS | STATUS_UNLOCKED;
    private byte? _output;
    private bool _outputAux;
    private byte _pendingCommand;
    private bool _translateBreak; // a set 2 F0 seen: the next translated code is a release
    private bool _keyboardLine, _mouseLine;
    // The viewer's last pointer position, for relative moves (not device state: a restored VM starts afresh).
    private (int X, int Y)? _pointer;
    // Paused (snapshot, migration): viewer input is dropped so the state and the interrupt lines stay still.
    private bool _paused;

    public I8042(IMachineControl machine, IInterruptLine? keyboardIrq = null, IInterruptLine? mouseIrq = null)
    {
        _machine = machine;
        _keyboardIrq = keyboardIrq;
        _mouseIrq = mouseIrq;
    }

    public string Name => "i8042";

    /// <summary>Registered over 0x60-0x64: offset 0 is data, offset 4 is status/command.</summary>
    public void Read(ulong offset, Span<byte> data)
    {
        if (data.IsEmpty) return;
        lock (_lock)
        {
            if (offset == 0)
            {
                data[0] = _output ?? 0;
                _output = null;
                // Lower the line first: the next byte raises it again, an edge the PIC/IOAPIC sees.
                SetLines(false, false);
                Refill();
            }
            else if (offset == 4) data[0] = Status();
            else data[0] = 0xff;
        }
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length == 0) return;
        byte v = data[0];
        bool reset = false;
        lock (_lock)
        {
            if (offset == 4)
            {
                _status |= STATUS_CMD;
                reset = Command(v);
            }
            else if (offset == 0)
            {
                _status &= unchecked((byte)~STATUS_CMD);
                byte command = _pendingCommand;
                _pendingCommand = 0;
                switch (command)
                {
                    case CMD_WRITE_CTR: _controlByte = v; break;
                    case CMD_KBD_LOOP: Reply(v, aux: false); break;
                    case CMD_AUX_LOOP: Reply(v, aux: true); break;
                    case CMD_AUX_SEND: _mouse.Receive(v); break;
                    case CMD_WRITE_OUTPUT_PORT: reset = (v & 1) == 0; break; // bit 0 low holds the CPU in reset
                    default:
                        _controlByte &= unchecked((byte)~CTR_KBDDIS); // writing to the keyboard enables its port
                        _keyboard.Receive(v);
                        break;
                }
            }
            Refill();
        }
        if (reset) _machine.RequestReset($"i8042 reset (0x{v:x2} on port 0x{(offset == 4 ? CommandPort : DataPort):x2})");
    }

    /// <summary>A controller command; true when it resets the machine.</summary>
    private bool Command(byte v)
    {
        switch (v)
        {
            case CMD_READ_CTR: Reply(_controlByte, aux: false); break;
            case >= 0x21 and <= 0x3F: Reply(0, aux: false); break; // controller RAM: nothing kept there
            case CMD_WRITE_CTR or CMD_KBD_LOOP or CMD_AUX_LOOP or CMD_AUX_SEND or CMD_WRITE_OUTPUT_PORT: _pendingCommand = v; break;
            case CMD_AUX_DISABLE: _controlByte |= CTR_AUXDIS; break;
            case CMD_AUX_ENABLE: _controlByte &= unchecked((byte)~CTR_AUXDIS); break;
            case CMD_AUX_TEST or CMD_KBD_TEST: Reply(0x00, aux: false); break; // interface test: no error
            case CMD_SELF_TEST: Reply(0x55, aux: false); break;
            case CMD_KBD_DISABLE: _controlByte |= CTR_KBDDIS; break;
            case CMD_KBD_ENABLE: _controlByte &= unchecked((byte)~CTR_KBDDIS); break;
            case 0xC0: Reply(0x00, aux: false); break; // input port
            case 0xD0: Reply(0x03, aux: false); break; // output port: A20 on, not in reset
            case CMD_PULSE_RESET: return true;
        }
        return false;
    }

    private byte Status()
    {
        byte s = _status;
        if (_output.HasValue) s |= STATUS_OBF;
        if (_output.HasValue && _outputAux) s |= STATUS_AUXDATA;
        return s;
    }

    private void Reply(byte value, bool aux)
    {
        if (_controller.Count < ControllerQueueLimit) _controller.Enqueue((value, aux));
    }

    /// <summary>
    /// Moves the next byte into the output buffer when it is empty: controller replies first, then the keyboard
    /// (translated to set 1 when the command byte says so), then the mouse; a disabled port keeps its bytes.
    /// </summary>
    private void Refill()
    {
        while (_output is null)
        {
            if (_controller.Count > 0)
            {
                (byte value, bool aux) = _controller.Dequeue();
                (_output, _outputAux) = (value, aux);
            }
            else if ((_controlByte & CTR_KBDDIS) == 0 && _keyboard.Count > 0)
            {
                byte b = _keyboard.Dequeue();
                if ((_controlByte & CTR_XLATE) != 0)
                {
                    if (b == 0xF0) { _translateBreak = true; continue; } // folded into the next code's bit 7
                    b = Ps2Keymap.TranslateToSet1(b);
                    if (_translateBreak) b |= 0x80;
                    _translateBreak = false;
                }
                (_output, _outputAux) = (b, false);
            }
            else if ((_controlByte & CTR_AUXDIS) == 0 && _mouse.Count > 0) (_output, _outputAux) = (_mouse.Dequeue(), true);
            else break;
        }
        SetLines(_output.HasValue && !_outputAux && (_controlByte & CTR_KBDINT) != 0,
                 _output.HasValue && _outputAux && (_controlByte & CTR_AUXINT) != 0);
    }

    private void SetLines(bool keyboard, bool mouse)
    {
        if (keyboard != _keyboardLine) { _keyboardLine = keyboard; _keyboardIrq?.SetLevel(keyboard); }
        if (mouse != _mouseLine) { _mouseLine = mouse; _mouseIrq?.SetLevel(mouse); }
    }

    // ---- input from viewers ----

    /// <summary>A keysym pressed or released; keysyms without a PC key are dropped.</summary>
    public void KeyEvent(uint keysym, bool down)
    {
        if (Ps2Keymap.Lookup(keysym) is not { } key) return;
        lock (_lock)
        {
            if (_paused) return;
            _keyboard.Key(key, down);
            Refill();
        }
    }

    /// <summary>The viewer's pointer: a relative move from its last position, buttons, and wheel clicks (RFB buttons 4 and 5).</summary>
    public void PointerEvent(int x, int y, byte buttons)
    {
        lock (_lock)
        {
            if (_paused) return;
            var last = _pointer ?? (x, y);
            _pointer = (x, y);
            int wheel = ((buttons & 0x08) != 0 ? -1 : 0) + ((buttons & 0x10) != 0 ? 1 : 0);
            int dx = x - last.X, dy = last.Y - y; // screen y grows down, PS/2 y up
            if (dx == 0 && dy == 0 && wheel == 0 && (buttons & 7) == _mouse.Buttons) return;
            _mouse.Move(dx, dy, buttons, wheel);
            Refill();
        }
    }

    public void Pause() { lock (_lock) _paused = true; }
    public void Resume() { lock (_lock) _paused = false; }

    // ---- state ----
    public string StateName => "i8042";
    public ushort StateVersion => I8042State.Version;

    public I8042State CaptureState()
    {
        lock (_lock)
            return new I8042State(_controlByte, _status, _output, _pendingCommand)
            {
                OutputAux = _outputAux,
                TranslateBreak = _translateBreak,
                Controller = [.. _controller.Select(c => c.Value)],
                ControllerAux = [.. _controller.Select(c => c.Aux ? (byte)1 : (byte)0)],
                Keyboard = _keyboard.Capture(),
                Mouse = _mouse.Capture(),
            };
    }

    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        var s = I8042State.Read(reader, version);
        lock (_lock)
        {
            (_controlByte, _status, _output, _pendingCommand) = (s.ControlByte, s.Status, s.Output, s.PendingCommand);
            _status &= unchecked((byte)~(STATUS_OBF | STATUS_AUXDATA)); // derived from the output buffer
            (_outputAux, _translateBreak) = (s.OutputAux, s.TranslateBreak);
            _controller.Clear();
            for (int i = 0; i < s.Controller.Length; i++) _controller.Enqueue((s.Controller[i], s.ControllerAux[i] != 0));
            _keyboard.Restore(s.Keyboard);
            _mouse.Restore(s.Mouse);
            _pointer = null;
            _keyboardLine = _mouseLine = false;
            Refill(); // drives the lines to match the restored buffer
        }
    }
}
