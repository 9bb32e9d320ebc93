using KvmPS.Devices;
using KvmPS.State;

namespace KvmPS.Acpi;

/// <summary>
/// The PM block: PM1a status, enable and control registers (SCI sources), the PM timer's count in 3.579545 MHz ticks
/// (the guest's clock source before its TSC is calibrated: it must not jump on restore), and since version 2 the GPE0
/// status and enable bits (a version-1 record, from before the GPE block, restores them as zero).
/// </summary>
public sealed record AcpiPmState(ushort Pm1Status, ushort Pm1Enable, ushort Pm1Control, ulong TimerTicks, ushort Gpe0Status = 0, ushort Gpe0Enable = 0)
{
    public const ushort Version = 2;

    public void Write(StateWriter w)
    {
        w.WriteUInt16(Pm1Status);
        w.WriteUInt16(Pm1Enable);
        w.WriteUInt16(Pm1Control);
        w.WriteUInt64(TimerTicks);
        w.WriteUInt16(Gpe0Status);
        w.WriteUInt16(Gpe0Enable);
    }

    public static AcpiPmState Read(StateReader r, ushort version)
    {
        DeviceState.EnsureVersion(r, version, Version);
        var s = new AcpiPmState(r.ReadUInt16(), r.ReadUInt16(), r.ReadUInt16(), r.ReadUInt64());
        if (version >= 2) s = s with { Gpe0Status = r.ReadUInt16(), Gpe0Enable = r.ReadUInt16() };
        r.EnsureEnd();
        return s;
    }
}
