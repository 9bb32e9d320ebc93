using System.Diagnostics;
using KvmPS.Devices;
using KvmPS.State;

namespace KvmPS.Acpi;

/// <summary>Raises general-purpose ACPI events: a hot-plug controller sets its GPE, the guest's _Exx method handles it.</summary>
public interface IAcpiEvents
{
    void RaiseGpe(int gpe);
}

/// <summary>
/// The ACPI fixed-hardware PM block at 0x600: PM1a event (status/enable), PM1a control (SCI_EN, sleep), the
/// 3.579545 MHz PM timer, and at 0x620 the GPE0 block (status bytes, then enable bytes) for GPEs 0-15, laid out as
/// in Intel's ICH PM I/O space. A sleep request for S5 powers the VM off; a power-button press and every enabled GPE
/// raise the one SCI (docs/acpi.md).
/// </summary>
public sealed class AcpiPm(IMachineControl machine, IInterruptLine sci) : IBusDevice, IPersistent, IPausable, IAcpiEvents
{
    public const ushort BasePort = 0x600;
    public const int Length = 0x24;
    /// <summary>GPE0_BLK: offset in the PM block, length (half status, half enable), and the GPEs it holds.</summary>
    public const int Gpe0Offset = 0x20, Gpe0BlockLength = 4, GpeCount = Gpe0BlockLength / 2 * 8;
    private const ushort PWRBTN_STS = 1 << 8, PWRBTN_EN = 1 << 8, SCI_EN = 1, SLP_EN = 1 << 13;
    private const int SLP_TYP_SHIFT = 10;
    public const int S5SleepType = 5;
    private const double PmTimerHz = 3_579_545.0;

    private readonly object _lock = new();
    private ushort _status, _enable, _control = SCI_EN; // SMI_CMD is 0 in the FADT: ACPI mode is always on
    private ushort _gpeStatus, _gpeEnable;
    // The timer counts from _timerBase at _start; frozen (paused or just restored) it reads _timerBase.
    private long _start = Stopwatch.GetTimestamp();
    private ulong _timerBase;
    private bool _timerFrozen;

    private ulong TimerTicks => _timerFrozen ? _timerBase : _timerBase + (ulong)(Stopwatch.GetElapsedTime(_start).TotalSeconds * PmTimerHz);

    public string Name => "acpi-pm";

    /// <summary>Presses the ACPI power button: the graceful-shutdown request an ACPI-aware guest acts on.</summary>
    public void PressPowerButton()
    {
        lock (_lock)
        {
            _status |= PWRBTN_STS;
            UpdateSci();
        }
    }

    /// <summary>
    /// The guest handles power-button presses: it has ACPI enabled (SCI_EN in PM1 control) and has unmasked the
    /// power-button event (PWRBTN_EN in PM1 enable), as an ACPI OS does once its button driver loads. A guest
    /// without ACPI support never sets PWRBTN_EN, so a press would raise no interrupt and be ignored.
    /// </summary>
    public bool PowerButtonEnabled { get { lock (_lock) return (_enable & PWRBTN_EN) != 0 && (_control & SCI_EN) != 0; } }

    /// <summary>Sets GPE <paramref name="gpe"/>'s status bit; the SCI follows once the guest has enabled that GPE.</summary>
    public void RaiseGpe(int gpe)
    {
        if (gpe is < 0 or >= GpeCount) throw new ArgumentOutOfRangeException(nameof(gpe), $"GPE {gpe} is outside GPE0 (0-{GpeCount - 1}).");
        lock (_lock)
        {
            _gpeStatus |= (ushort)(1 << gpe);
            UpdateSci();
        }
    }

    /// <summary>The GPE0 status and enable bits (for tests and status).</summary>
    public (ushort Status, ushort Enable) Gpe0 { get { lock (_lock) return (_gpeStatus, _gpeEnable); } }

    public void Read(ulong offset, Span<byte> data)
    {
        if (offset >= Gpe0Offset)
        {
            lock (_lock)
                for (int i = 0; i < data.Length; i++) data[i] = GpeByte(offset + (ulong)i - Gpe0Offset);
            return;
        }
        uint value;
        lock (_lock)
        {
            value = offset switch
            {
                0 => (uint)(_status | (_enable << 16)),
                2 => _enable,
                4 => _control,
                8 => (uint)TimerTicks & 0x00FF_FFFF,
                _ => 0xFFFF_FFFF,
            };
        }
        for (int i = 0; i < data.Length; i++) data[i] = (byte)(value >> (8 * i));
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset >= Gpe0Offset)
        {
            lock (_lock)
            {
                for (int i = 0; i < data.Length; i++) WriteGpeByte(offset + (ulong)i - Gpe0Offset, data[i]);
                UpdateSci();
            }
            return;
        }
        uint value = 0;
        for (int i = 0; i < data.Length && i < 4; i++) value |= (uint)data[i] << (8 * i);
        bool powerOff = false;
        lock (_lock)
        {
            switch (offset)
            {
                case 0:
                    _status &= (ushort)~value; // write-one-to-clear
                    if (data.Length == 4) _enable = (ushort)(value >> 16);
                    break;
                case 2: _enable = (ushort)value; break;
                case 4:
                    _control = (ushort)(value & ~SLP_EN);
                    powerOff = (value & SLP_EN) != 0 && ((value >> SLP_TYP_SHIFT) & 7) == S5SleepType;
                    break;
            }
            UpdateSci();
        }
        if (powerOff) machine.RequestPowerOff("ACPI S5 (guest power-off)");
    }

    // GPE0 bytes: 0-1 status (write one to clear), 2-3 enable.
    private byte GpeByte(ulong at) => at switch
    {
        0 or 1 => (byte)(_gpeStatus >> (8 * (int)at)),
        2 or 3 => (byte)(_gpeEnable >> (8 * (int)(at - 2))),
        _ => 0xFF,
    };

    private void WriteGpeByte(ulong at, byte value)
    {
        switch (at)
        {
            case 0 or 1: _gpeStatus &= (ushort)~(value << (8 * (int)at)); break;
            case 2 or 3:
                int shift = 8 * (int)(at - 2);
                _gpeEnable = (ushort)((_gpeEnable & ~(0xFF << shift)) | (value << shift));
                break;
        }
    }

    private void UpdateSci() => sci.SetLevel(((_status & _enable) != 0 || (_gpeStatus & _gpeEnable) != 0) && (_control & SCI_EN) != 0);

    // ---- pause and state ----
    /// <summary>Freezes the PM timer: guest time does not pass while the VM is paused.</summary>
    public void Pause()
    {
        lock (_lock)
        {
            if (_timerFrozen) return;
            _timerBase = TimerTicks;
            _timerFrozen = true;
        }
    }

    public void Resume()
    {
        lock (_lock)
        {
            if (!_timerFrozen) return;
            _start = Stopwatch.GetTimestamp();
            _timerFrozen = false;
        }
    }

    public string StateName => "acpi-pm";
    public ushort StateVersion => AcpiPmState.Version;

    public AcpiPmState CaptureState() { lock (_lock) return new AcpiPmState(_status, _enable, _control, TimerTicks, _gpeStatus, _gpeEnable); }
    public void SaveState(StateWriter writer) => CaptureState().Write(writer);

    /// <summary>Puts the registers back with the timer frozen at the saved count (it runs on <see cref="Resume"/>) and drives the SCI to match.</summary>
    public void RestoreState(StateReader reader, ushort version)
    {
        var s = AcpiPmState.Read(reader, version);
        lock (_lock)
        {
            (_status, _enable, _control) = (s.Pm1Status, s.Pm1Enable, (ushort)(s.Pm1Control & ~SLP_EN));
            (_gpeStatus, _gpeEnable) = (s.Gpe0Status, s.Gpe0Enable);
            _timerBase = s.TimerTicks;
            _timerFrozen = true;
            UpdateSci();
        }
    }
}
