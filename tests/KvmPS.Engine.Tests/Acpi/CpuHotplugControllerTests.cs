using KvmPS.Acpi;
using KvmPS.Devices;
using KvmPS.State;
using static KvmPS.Acpi.CpuHotplugController;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>
/// The CPU hot-plug controller's registers as the DSDT's methods use them, and the GPE0 block in the PM block that
/// carries its event to the SCI.
/// </summary>
public sealed class CpuHotplugControllerTests
{
    private sealed class Events : IAcpiEvents
    {
        public readonly List<int> Raised = new();
        public void RaiseGpe(int gpe) => Raised.Add(gpe);
    }

    private sealed class Machine : IMachineControl
    {
        public void RequestPowerOff(string reason) { }
        public void RequestReset(string reason) { }
        public void RequestDebugExit(int guestValue) { }
    }

    private sealed class Line : IInterruptLine
    {
        public bool Level;
        public void Trigger() { }
        public void SetLevel(bool asserted) => Level = asserted;
    }

    private static void Select(CpuHotplugController c, uint cpu) => c.Write(SelectOffset, BitConverter.GetBytes(cpu));
    private static byte Status(CpuHotplugController c) { Span<byte> b = stackalloc byte[1]; c.Read(StatusOffset, b); return b[0]; }
    private static void Command(CpuHotplugController c, byte command) => c.Write(CommandOffset, [command]);

    [Fact]
    public void BootCpusArePresentAndTheRestAbsent()
    {
        var c = new CpuHotplugController(4, 2, new Events());
        for (uint cpu = 0; cpu < 4; cpu++)
        {
            Select(c, cpu);
            Assert.Equal(cpu < 2 ? STATUS_PRESENT : 0, Status(c));
        }
        Span<byte> sel = stackalloc byte[4];
        c.Read(SelectOffset, sel);
        Assert.Equal(3u, BitConverter.ToUInt32(sel)); // SELECT reads back
    }

    [Fact]
    public void InsertMarksPresentWithAnEventUntilAcknowledged()
    {
        var events = new Events();
        var c = new CpuHotplugController(4, 1, events);
        c.Insert(2);
        Assert.Equal([CpuHotplugAcpi.Gpe], events.Raised);
        Select(c, 2);
        Assert.Equal(STATUS_PRESENT | STATUS_INSERTING, Status(c));
        Command(c, CMD_ACK_INSERT);
        Assert.Equal(STATUS_PRESENT, Status(c));
        Assert.Throws<InvalidOperationException>(() => c.Insert(2)); // already present
        Assert.Throws<ArgumentOutOfRangeException>(() => c.Insert(4)); // beyond the maximum
    }

    [Fact]
    public void RemovalIsAnEventAndEjectClearsPresentAndReportsTheCpu()
    {
        var events = new Events();
        var c = new CpuHotplugController(4, 3, events);
        var ejected = new List<int>();
        c.Ejected += ejected.Add;
        c.RequestRemoval(2);
        Select(c, 2);
        Assert.Equal(STATUS_PRESENT | STATUS_REMOVING, Status(c));
        Command(c, CMD_ACK_REMOVE);
        Assert.Equal(STATUS_PRESENT, Status(c));
        Command(c, CMD_EJECT);
        Assert.Equal(STATUS_EJECTED, Status(c));
        Assert.Equal([2], ejected);
        Command(c, CMD_EJECT); // nothing left to eject
        Assert.Equal([2], ejected);
        c.Insert(2); // and it can come back
        Assert.Equal(STATUS_PRESENT | STATUS_INSERTING, Status(c));
    }

    [Fact]
    public void TheBootCpuCannotBeRemovedOrEjected()
    {
        var c = new CpuHotplugController(2, 2, new Events());
        var ejected = new List<int>();
        c.Ejected += ejected.Add;
        Assert.Throws<InvalidOperationException>(() => c.RequestRemoval(0));
        Select(c, 0);
        Command(c, CMD_EJECT);
        Assert.Empty(ejected);
        Assert.Equal(STATUS_PRESENT, Status(c));
    }

    [Fact]
    public void ASelectionOutsideThePossibleCpusReadsAsNoCpuAndIgnoresCommands()
    {
        var c = new CpuHotplugController(2, 2, new Events());
        var ejected = new List<int>();
        c.Ejected += ejected.Add;
        foreach (uint bad in new uint[] { 2, 255, uint.MaxValue })
        {
            Select(c, bad);
            Assert.Equal(0, Status(c));
            Command(c, CMD_EJECT);
            Command(c, 0xFF);
        }
        Assert.Empty(ejected);
    }

    [Fact]
    public void AnEnabledGpeRaisesTheSciUntilTheGuestClearsIt()
    {
        var sci = new Line();
        var pm = new AcpiPm(new Machine(), sci);
        const ulong gpeStatus = AcpiPm.Gpe0Offset, gpeEnable = AcpiPm.Gpe0Offset + AcpiPm.Gpe0BlockLength / 2;
        pm.RaiseGpe(CpuHotplugAcpi.Gpe);
        Assert.False(sci.Level); // not enabled yet
        Span<byte> b = stackalloc byte[1];
        pm.Read(gpeStatus, b);
        Assert.Equal(1 << CpuHotplugAcpi.Gpe, b[0]);
        pm.Write(gpeEnable, [1 << CpuHotplugAcpi.Gpe]);
        Assert.True(sci.Level);
        pm.Write(gpeStatus, [1 << CpuHotplugAcpi.Gpe]); // write one to clear
        Assert.False(sci.Level);
        pm.Read(gpeStatus, b);
        Assert.Equal(0, b[0]);
        pm.Read(gpeEnable, b);
        Assert.Equal(1 << CpuHotplugAcpi.Gpe, b[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => pm.RaiseGpe(AcpiPm.GpeCount));
    }

    [Fact]
    public void ThePowerButtonAndAGpeShareTheSci()
    {
        var sci = new Line();
        var pm = new AcpiPm(new Machine(), sci);
        pm.Write(2, [0x00, 0x01]); // PWRBTN_EN
        pm.Write(AcpiPm.Gpe0Offset + 2, [1 << CpuHotplugAcpi.Gpe]);
        pm.PressPowerButton();
        pm.RaiseGpe(CpuHotplugAcpi.Gpe);
        pm.Write(0, [0x00, 0x01]); // clear PWRBTN_STS: the GPE still holds the line
        Assert.True(sci.Level);
        pm.Write(AcpiPm.Gpe0Offset, [1 << CpuHotplugAcpi.Gpe]);
        Assert.False(sci.Level);
    }

    [Fact]
    public void APmRecordFromBeforeTheGpeBlockRestoresWithNoGpe()
    {
        var v1 = new StateWriter();
        v1.WriteUInt16(0x0100); // PWRBTN_STS
        v1.WriteUInt16(0x0100); // PWRBTN_EN
        v1.WriteUInt16(1);      // SCI_EN
        v1.WriteUInt64(12345);
        var sci = new Line();
        var pm = new AcpiPm(new Machine(), sci);
        pm.RestoreState(new StateReader(v1.ToArray(), "acpi-pm"), 1);
        Assert.True(sci.Level);
        Assert.Equal(((ushort)0, (ushort)0), pm.Gpe0);

        pm.Write(AcpiPm.Gpe0Offset + 2, [1 << CpuHotplugAcpi.Gpe]);
        pm.RaiseGpe(CpuHotplugAcpi.Gpe);
        var w = new StateWriter();
        pm.SaveState(w);
        var restored = new AcpiPm(new Machine(), new Line());
        restored.RestoreState(new StateReader(w.ToArray(), "acpi-pm"), AcpiPmState.Version);
        Assert.Equal(((ushort)(1 << CpuHotplugAcpi.Gpe), (ushort)(1 << CpuHotplugAcpi.Gpe)), restored.Gpe0);
    }

    private static byte[] Saved(CpuHotplugController c)
    {
        var w = new StateWriter();
        c.SaveState(w);
        return w.ToArray();
    }

    [Fact]
    public void TheStateRecordRestoresEveryCpusStatusAndSelectAndRefusesWhatTheControllerCannotHold()
    {
        var events = new Events();
        var c = new CpuHotplugController(4, 1, events);
        c.Insert(2);
        c.Insert(1);
        Select(c, 1);
        Command(c, CMD_ACK_INSERT);
        c.RequestRemoval(1);
        Select(c, 3);
        byte[] record = Saved(c);

        var restored = new CpuHotplugController(4, 1, new Events());
        restored.RestoreState(new StateReader(record, "cpu-hotplug"), 1);
        Assert.Equal(STATUS_PRESENT, restored.StatusOf(0));
        Assert.Equal(STATUS_PRESENT | STATUS_REMOVING, restored.StatusOf(1));
        Assert.Equal(STATUS_PRESENT | STATUS_INSERTING, restored.StatusOf(2));
        Assert.Equal(0, restored.StatusOf(3));
        Assert.Equal(0, Status(restored)); // SELECT 3 came back: CPU 3's status

        // Another maximum, undefined status bits, an absent boot CPU, a short record, an unknown version: refused, named.
        var other = new CpuHotplugController(8, 1, new Events());
        Assert.Contains("max_vcpus differs", Assert.Throws<StateFormatException>(() => other.RestoreState(new StateReader(record, "cpu-hotplug"), 1)).Message);
        byte[] badBits = (byte[])record.Clone();
        badBits[8 + 2] = 0x80;
        Assert.Contains("CPU 2 has status 0x80", Assert.Throws<StateFormatException>(() => restored.RestoreState(new StateReader(badBits, "cpu-hotplug"), 1)).Message);
        byte[] noBoot = (byte[])record.Clone();
        noBoot[8] = 0;
        Assert.Contains("CPU 0", Assert.Throws<StateFormatException>(() => restored.RestoreState(new StateReader(noBoot, "cpu-hotplug"), 1)).Message);
        Assert.Throws<StateFormatException>(() => restored.RestoreState(new StateReader(record[..^1], "cpu-hotplug"), 1));
        Assert.Throws<StateFormatException>(() => restored.RestoreState(new StateReader(record, "cpu-hotplug"), 2));
        Assert.Equal(STATUS_PRESENT | STATUS_INSERTING, restored.StatusOf(2)); // a refused record changed nothing
    }
}
