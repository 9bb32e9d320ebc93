using KvmPS.Devices;
using KvmPS.State;

namespace KvmPS.Acpi;

/// <summary>
/// The PM block: PM1a status, enable and control registers (GPE/SCI sources), and the PM timer's count in
/// 3.579545 MHz ticks (the guest's clock source before its TSC is calibrated: it must not jump on restore).
/// </summary>
public sealed record AcpiPmState(ushort Pm1Status, ushort Pm1Enable, ushort Pm1Control, ulong TimerTicks)
{
    public const ushort Version = 1;

    public void Write(StateWriter w)
    {
        w.WriteUInt16(Pm1Status);
        w.WriteUInt16(Pm1Enable);
        w.WriteUInt16(Pm1Control);
        w.WriteUInt64(TimerTicks);
    }

    public static AcpiPmState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        var s = new AcpiPmState(r.ReadUInt16(), r.ReadUInt16(), r.ReadUInt16(), r.ReadUInt64());
        r.EnsureEnd();
        return s;
    }
}
