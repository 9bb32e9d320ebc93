using KvmPS.Acpi;
using KvmPS.Devices;
using KvmPS.Devices.Legacy;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices.State;

public sealed class LegacyDeviceStateTests : IDisposable
{
    private readonly GuestMemory _mem = GuestMemory.Create(16UL << 20);
    public void Dispose() => _mem.Dispose();

    private sealed class Line : IInterruptLine
    {
        public bool Level;
        public int Changes;
        public void Trigger() { }
        public void SetLevel(bool asserted) { Level = asserted; Changes++; }
    }

    private sealed class Machine : IMachineControl
    {
        public void RequestPowerOff(string reason) { }
        public void RequestReset(string reason) { }
        public void RequestDebugExit(int guestValue) { }
    }

    private static void Out(IBusDevice d, ulong offset, byte value) => d.Write(offset, [value]);
    private static byte In(IBusDevice d, ulong offset) { Span<byte> b = stackalloc byte[1]; d.Read(offset, b); return b[0]; }

    private static Serial16550 NewSerial(Line? line = null) => new(line ?? new Line(), _ => { });

    [Fact]
    public void SerialRoundTripsRegistersFifoAndHeldInputAndRaisesItsLineAgain()
    {
        var serial = NewSerial();
        serial.EnqueueInput("held"u8);           // before the receiver opens: held
        Out(serial, 3, 0x83); Out(serial, 0, 0x01); Out(serial, 1, 0x00); Out(serial, 3, 0x03); // divisor 1, 8N1
        Out(serial, 7, 0x5A);
        Out(serial, 2, 0x01);                    // FIFO on
        Out(serial, 1, 0x01);                    // RX interrupt: the receiver opens, "held" moves to the FIFO
        Assert.Equal((byte)'h', In(serial, 0));
        serial.EnqueueInput("xy"u8);

        var line = new Line();
        var restored = NewSerial(line);
        StateAssert.RoundTrips(serial, restored);
        Assert.True(line.Level); // data ready with RX interrupts enabled: the restored UART asserts its IRQ
        Assert.Equal(0x5A, In(restored, 7));
        Assert.Equal("eldxy", string.Concat(Enumerable.Range(0, 5).Select(_ => (char)In(restored, 0))));
        Assert.False(line.Level);
        StateAssert.RejectsDamagedRecords(serial, () => NewSerial());
    }

    [Fact]
    public void SerialRefusesReservedRegisterBits()
    {
        var s = NewSerial().CaptureState() with { Ier = 0xF0 };
        var w = new StateWriter();
        s.Write(w);
        var e = Assert.Throws<StateFormatException>(() => DeviceState.Restore(NewSerial(), w.ToArray(), Serial16550State.Version));
        Assert.Equal("serial0", e.RecordName);
        Assert.Contains("IER", e.Message);
    }

    [Fact]
    public void CmosRoundTripsIndexAndBytes()
    {
        var rtc = new CmosRtc(64UL << 20);
        Out(rtc, 0, 0x40); Out(rtc, 1, 0x99); Out(rtc, 0, 0x41);
        var restored = new CmosRtc(64UL << 20);
        StateAssert.RoundTrips(rtc, restored);
        Out(restored, 0, 0x40);
        Assert.Equal(0x99, In(restored, 1));
        StateAssert.RejectsDamagedRecords(rtc, () => new CmosRtc(64UL << 20));
    }

    [Fact]
    public void I8042RoundTripsAPendingCommandAndOutputByte()
    {
        var kbd = new I8042(new Machine());
        Out(kbd, 4, 0x60); // write command byte: waits for the data byte
        var restored = new I8042(new Machine());
        StateAssert.RoundTrips(kbd, restored);
        Out(restored, 0, 0x47);
        Out(restored, 4, 0x20);
        Assert.Equal(0x47, In(restored, 0)); // the half-done command completed on the restored controller
        StateAssert.RejectsDamagedRecords(kbd, () => new I8042(new Machine()));
    }

    [Fact]
    public void AcpiPmRoundTripsRegistersWithTheTimerFrozenUntilResume()
    {
        var sci = new Line();
        var pm = new AcpiPm(new Machine(), sci);
        pm.Write(2, [0x00, 0x01]);  // PWRBTN_EN
        pm.PressPowerButton();
        Assert.True(sci.Level);
        pm.Pause();
        var restoredSci = new Line();
        var restored = new AcpiPm(new Machine(), restoredSci);
        StateAssert.RoundTrips(pm, restored);
        Assert.True(restoredSci.Level); // the pending power-button event still raises the SCI
        Assert.True(restored.PowerButtonEnabled);

        uint Timer(AcpiPm p) { Span<byte> b = stackalloc byte[4]; p.Read(8, b); return BitConverter.ToUInt32(b); }
        uint frozen = Timer(restored);
        Assert.Equal(pm.CaptureState().TimerTicks & 0xFF_FFFF, frozen);
        Thread.Sleep(20);
        Assert.Equal(frozen, Timer(restored));
        restored.Resume();
        Thread.Sleep(20);
        Assert.NotEqual(frozen, Timer(restored));
        StateAssert.RejectsDamagedRecords(pm, () => new AcpiPm(new Machine(), new Line()));
    }

    private FwCfg NewFwCfg(params string[] files)
    {
        var f = new FwCfg(_mem);
        foreach (var name in files) f.AddFile(name, new byte[32]);
        return f;
    }

    [Fact]
    public void FwCfgRoundTripsSelectorAndOffsetAndRefusesOtherFiles()
    {
        var fw = NewFwCfg("etc/a", "etc/b");
        fw.Write(0, [0x19, 0x00]); // the file directory
        Span<byte> b = stackalloc byte[1];
        for (int i = 0; i < 5; i++) fw.Read(1, b);
        var restored = NewFwCfg("etc/a", "etc/b");
        StateAssert.RoundTrips(fw, restored);
        restored.Read(1, b);
        Assert.Equal(0, b[0]);     // byte 5 of the directory: the first entry's size (be32 32) high byte
        restored.Read(1, b); restored.Read(1, b);
        Assert.Equal(32, b[0]);    // byte 7: its low byte — the offset continued where it was
        StateAssert.RejectsDamagedRecords(fw, () => NewFwCfg("etc/a", "etc/b"));

        var other = NewFwCfg("etc/a");
        var e = Assert.Throws<StateFormatException>(() => DeviceState.Restore(other, DeviceState.Save(fw), FwCfgState.Version));
        Assert.Equal("fw-cfg", e.RecordName);
        Assert.Contains("etc/b", e.Message);
    }
}

public sealed class SerialPauseTests
{
    private sealed class Line : IInterruptLine
    {
        public int Changes;
        public void Trigger() { }
        public void SetLevel(bool asserted) => Changes++;
    }

    [Fact]
    public void ConsoleInputWhilePausedWaitsOnTheHostSide()
    {
        var line = new Line();
        var serial = new Serial16550(line, _ => { });
        serial.Write(1, [0x01]); // RX interrupts on: the receiver is open
        serial.Pause();
        var before = DeviceState.Save(serial);
        Assert.Equal(2, serial.EnqueueInput("ab"u8));
        Assert.Equal(before, DeviceState.Save(serial)); // the UART did not change
        Assert.Equal(0, line.Changes);
        serial.Resume();
        Assert.Equal(1, line.Changes);
        Span<byte> b = stackalloc byte[1];
        serial.Read(0, b);
        Assert.Equal((byte)'a', b[0]);
    }
}

public sealed class PostCodeStateTests
{
    [Fact]
    public void PostCodeRoundTripsItsLastCode()
    {
        var port = new PostCode();
        port.Write(0, [0x42]);
        var restored = new PostCode();
        StateAssert.RoundTrips(port, restored);
        Span<byte> b = stackalloc byte[1];
        restored.Read(0, b);
        Assert.Equal(0x42, b[0]);
        StateAssert.RejectsDamagedRecords(port, () => new PostCode());
    }
}
