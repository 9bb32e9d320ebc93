using KvmPS.State;

namespace KvmPS.Devices.Legacy;

/// <summary>
/// An i8042 keyboard controller, only as far as guests use it on a headless VM: status reads, the command byte,
/// the self-test, and the 0xFE command that pulses the CPU reset line.
/// </summary>
public sealed class I8042(IMachineControl machine) : IBusDevice, IPersistent
{
    public const ushort DataPort = 0x60, CommandPort = 0x64;
    private const byte CMD_READ_CTR = 0x20, CMD_WRITE_CTR = 0x60, CMD_SELF_TEST = 0xAA, CMD_PULSE_RESET = 0xFE;
    private const byte STATUS_OBF = 0x01, STATUS_SYS = 0x04, STATUS_CMD = 0x08;

    private readonly object _lock = new();
    private byte _controlByte = 0x05, _status = STATUS_SYS;
    private byte? _output;
    private byte _pendingCommand;

    public string Name => "i8042";

    /// <summary>Registered over 0x60-0x64: offset 0 is data, offset 4 is status/command.</summary>
    public void Read(ulong offset, Span<byte> data)
    {
        lock (_lock)
        {
            if (offset == 0)
            {
                data[0] = _output ?? 0;
                _output = null;
                _status &= unchecked((byte)~STATUS_OBF);
            }
            else if (offset == 4) data[0] = _status;
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
                switch (v)
                {
                    case CMD_READ_CTR: Respond(_controlByte); break;
                    case CMD_WRITE_CTR: _pendingCommand = v; break;
                    case CMD_SELF_TEST: Respond(0x55); break;
                    case CMD_PULSE_RESET: reset = true; break;
                }
            }
            else if (offset == 0)
            {
                _status &= unchecked((byte)~STATUS_CMD);
                if (_pendingCommand == CMD_WRITE_CTR) _controlByte = v;
                _pendingCommand = 0;
            }
        }
        if (reset) machine.RequestReset("i8042 reset (0xFE on port 0x64)");
    }

    private void Respond(byte value)
    {
        _output = value;
        _status |= STATUS_OBF;
    }

    // ---- state ----
    public string StateName => "i8042";
    public ushort StateVersion => I8042State.Version;

    public I8042State CaptureState() { lock (_lock) return new I8042State(_controlByte, _status, _output, _pendingCommand); }
    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    public void RestoreState(StateReader reader, ushort version)
    {
        var s = I8042State.Read(reader, version);
        lock (_lock) (_controlByte, _status, _output, _pendingCommand) = (s.ControlByte, s.Status, s.Output, s.PendingCommand);
    }
}
