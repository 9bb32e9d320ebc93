using KvmPS.Acpi;
using KvmPS.Devices;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>
/// The PM block knows whether the guest handles power-button presses, which is what lets a graceful stop tell
/// "the guest ignores ACPI" from "the guest took too long".
/// </summary>
public sealed class AcpiPmTests
{
    private sealed class Machine : IMachineControl
    {
        public readonly List<string> PowerOffs = new();
        public void RequestPowerOff(string reason) => PowerOffs.Add(reason);
        public void RequestReset(string reason) { }
        public void RequestDebugExit(int guestValue) { }
    }

    private sealed class Line : IInterruptLine
    {
        public bool Level;
        public void Trigger() { }
        public void SetLevel(bool asserted) => Level = asserted;
    }

    private static void Write16(AcpiPm pm, ulong offset, ushort value) => pm.Write(offset, [(byte)value, (byte)(value >> 8)]);

    private static ushort Read16(AcpiPm pm, ulong offset)
    {
        Span<byte> b = stackalloc byte[2];
        pm.Read(offset, b);
        return (ushort)(b[0] | b[1] << 8);
    }

    [Fact]
    public void ThePowerButtonIsHandledOnlyOnceTheGuestEnablesItWithAcpiOn()
    {
        var line = new Line();
        var pm = new AcpiPm(new Machine(), line);
        Assert.False(pm.PowerButtonEnabled); // a guest that never touched ACPI (the built-in guest)

        pm.PressPowerButton();
        Assert.False(line.Level); // ignored: no SCI without PWRBTN_EN

        Write16(pm, 2, 1 << 8); // PM1 enable: PWRBTN_EN, as an ACPI OS's button driver does
        Assert.True(pm.PowerButtonEnabled);
        Assert.True(line.Level); // the pending press now raises the SCI

        Write16(pm, 0, 1 << 8); // the OS acknowledges (write-one-to-clear)
        Assert.False(line.Level);

        Write16(pm, 4, (ushort)(Read16(pm, 4) & ~1)); // SCI_EN cleared: ACPI off, presses cannot reach the OS
        Assert.False(pm.PowerButtonEnabled);
        pm.PressPowerButton();
        Assert.False(line.Level);
    }
}
