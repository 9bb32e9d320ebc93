using KvmPS.Devices;
using KvmPS.Devices.Legacy;
using KvmPS.Engine.Tests.Devices.State;
using KvmPS.State;

namespace KvmPS.Engine.Tests.Devices.Legacy;

public sealed class I8042Ps2Tests
{
    private sealed class Line : IInterruptLine
    {
        public bool Level;
        public int Rises;
        public void Trigger() { }
        public void SetLevel(bool asserted) { if (asserted && !Level) Rises++; Level = asserted; }
    }

    private sealed class Machine : IMachineControl
    {
        public int Resets;
        public void RequestPowerOff(string reason) { }
        public void RequestReset(string reason) => Resets++;
        public void RequestDebugExit(int guestValue) { }
    }

    private readonly Line _kbdIrq = new(), _auxIrq = new();
    private readonly Machine _machine = new();
    private readonly I8042 _i8042;

    public I8042Ps2Tests() => _i8042 = new I8042(_machine, _kbdIrq, _auxIrq);

    private void Cmd(byte v) => _i8042.Write(4, [v]);
    private void Data(byte v) => _i8042.Write(0, [v]);
    private byte Status() { Span<byte> b = stackalloc byte[1]; _i8042.Read(4, b); return b[0]; }

    /// <summary>Reads every byte in the output buffer, as a driver does: status OBF, then port 0x60.</summary>
    private List<byte> Drain(bool? expectAux = null)
    {
        var bytes = new List<byte>();
        Span<byte> b = stackalloc byte[1];
        while ((Status() & 0x01) != 0 && bytes.Count < 1000)
        {
            if (expectAux is bool aux) Assert.Equal(aux, (Status() & 0x20) != 0);
            _i8042.Read(0, b);
            bytes.Add(b[0]);
        }
        return bytes;
    }

    private void WriteCommandByte(byte v) { Cmd(0x60); Data(v); }

    [Fact]
    public void ControllerSelfTestsCommandByteAndPortEnables()
    {
        Cmd(0xAA);
        Assert.Equal([0x55], Drain());
        Cmd(0xAB);
        Assert.Equal([0x00], Drain());
        Cmd(0xA9);
        Assert.Equal([0x00], Drain());
        Cmd(0x20);
        Assert.Equal([0x45], Drain()); // keyboard interrupt, system flag, translation: what SeaBIOS and Linux expect to find
        Cmd(0xA7); Cmd(0xAD);
        Cmd(0x20);
        Assert.Equal([0x75], Drain());
        Cmd(0xA8); Cmd(0xAE);
        Cmd(0x20);
        Assert.Equal([0x45], Drain());
        WriteCommandByte(0x47);
        Cmd(0x20);
        Assert.Equal([0x47], Drain());
        Cmd(0xFE);
        Assert.Equal(1, _machine.Resets);
    }

    [Fact]
    public void KeyboardCommandsAnswerAsAnAtKeyboard()
    {
        WriteCommandByte(0x04); // no translation, no interrupts
        Data(0xFF); Assert.Equal([0xFA, 0xAA], Drain(expectAux: false));
        Data(0xF2); Assert.Equal([0xFA, 0xAB, 0x83], Drain());
        Data(0xEE); Assert.Equal([0xEE], Drain());
        Data(0xED); Data(0x07); Assert.Equal([0xFA, 0xFA], Drain());
        Data(0xF3); Data(0x20); Assert.Equal([0xFA, 0xFA], Drain());
        Data(0xF0); Data(0x00); Assert.Equal([0xFA, 0xFA, 0x02], Drain());
        Data(0xF0); Data(0x03); Assert.Equal([0xFA, 0xFE], Drain()); // set 3 not offered
        Data(0xF5); Assert.Equal([0xFA], Drain());
        _i8042.KeyEvent('a', true);
        Assert.Empty(Drain()); // scanning disabled
        Data(0xF4); Assert.Equal([0xFA], Drain());
        Data(0xAB); Assert.Equal([0xFE], Drain()); // not a keyboard command
        WriteCommandByte(0x44);
        Data(0xF2); Assert.Equal([0xFA, 0xAB, 0x41], Drain()); // translated ID, as atkbd accepts
    }

    [Theory]
    [InlineData(0x61u, false, new byte[] { 0x1C }, new byte[] { 0xF0, 0x1C })]              // a
    [InlineData(0x41u, false, new byte[] { 0x1C }, new byte[] { 0xF0, 0x1C })]              // A: same key
    [InlineData(0x31u, false, new byte[] { 0x16 }, new byte[] { 0xF0, 0x16 })]              // 1
    [InlineData(0x21u, false, new byte[] { 0x16 }, new byte[] { 0xF0, 0x16 })]              // !: the 1 key
    [InlineData(0xff0du, false, new byte[] { 0x5A }, new byte[] { 0xF0, 0x5A })]            // Return
    [InlineData(0xffc2u, false, new byte[] { 0x03 }, new byte[] { 0xF0, 0x03 })]            // F5
    [InlineData(0xff51u, false, new byte[] { 0xE0, 0x6B }, new byte[] { 0xE0, 0xF0, 0x6B })] // Left
    [InlineData(0xffffu, false, new byte[] { 0xE0, 0x71 }, new byte[] { 0xE0, 0xF0, 0x71 })] // Delete
    public void KeysymsGiveSet2Codes(uint keysym, bool _, byte[] make, byte[] release)
    {
        WriteCommandByte(0x04);
        _i8042.KeyEvent(keysym, true);
        Assert.Equal(make, Drain());
        _i8042.KeyEvent(keysym, false);
        Assert.Equal(release, Drain());
    }

    [Theory]
    [InlineData(0x61u, new byte[] { 0x1E }, new byte[] { 0x9E })]                 // a
    [InlineData(0x2fu, new byte[] { 0x35 }, new byte[] { 0xB5 })]                 // /
    [InlineData(0xff1bu, new byte[] { 0x01 }, new byte[] { 0x81 })]               // Escape
    [InlineData(0xffc4u, new byte[] { 0x41 }, new byte[] { 0xC1 })]               // F7 (set 2 0x83)
    [InlineData(0xffc9u, new byte[] { 0x58 }, new byte[] { 0xD8 })]               // F12
    [InlineData(0xffe4u, new byte[] { 0xE0, 0x1D }, new byte[] { 0xE0, 0x9D })]   // Control_R
    [InlineData(0xff55u, new byte[] { 0xE0, 0x49 }, new byte[] { 0xE0, 0xC9 })]   // Page_Up
    [InlineData(0xff52u, new byte[] { 0xE0, 0x48 }, new byte[] { 0xE0, 0xC8 })]   // Up
    public void TranslationGivesSet1Codes(uint keysym, byte[] make, byte[] release)
    {
        _i8042.KeyEvent(keysym, true);
        Assert.Equal(make, Drain());
        _i8042.KeyEvent(keysym, false);
        Assert.Equal(release, Drain());
    }

    [Fact]
    public void InputWhilePausedIsDropped()
    {
        _i8042.Pause();
        _i8042.KeyEvent('a', true);
        Assert.Empty(Drain());
        Assert.False(_kbdIrq.Level);
        _i8042.Resume();
        _i8042.KeyEvent('a', true);
        Assert.Equal([0x1E], Drain());
    }

    [Fact]
    public void Set1SelectedByTheGuestIsSentUntranslated()
    {
        WriteCommandByte(0x04);
        Data(0xF0); Data(0x01); Assert.Equal([0xFA, 0xFA], Drain());
        _i8042.KeyEvent(0xff09, true); _i8042.KeyEvent(0xff09, false); // Tab
        Assert.Equal([0x0F, 0x8F], Drain());
    }

    [Fact]
    public void KeyboardDataRaisesIrq1OnlyWhenEnabledAndEachByteIsANewEdge()
    {
        _i8042.KeyEvent(0xff51, true); // E0 4B: two bytes
        Assert.True(_kbdIrq.Level);
        Assert.False(_auxIrq.Level);
        Drain();
        Assert.False(_kbdIrq.Level);
        Assert.Equal(2, _kbdIrq.Rises);
        WriteCommandByte(0x44); // interrupt off
        _i8042.KeyEvent('q', true);
        Assert.False(_kbdIrq.Level);
        Assert.Equal([0x10], Drain());
        Cmd(0xAD); // keyboard port disabled: bytes wait
        _i8042.KeyEvent('q', false);
        Assert.Empty(Drain());
        Cmd(0xAE);
        Assert.Equal([0x90], Drain());
    }

    [Fact]
    public void MouseCommandsAndLoopBackGoThroughTheAuxPort()
    {
        WriteCommandByte(0x47); // both interrupts, translation
        Cmd(0xD3); Data(0x5A); // Linux's aux loop-back probe
        Assert.True(_auxIrq.Level);
        Assert.Equal([0x5A], Drain(expectAux: true));
        Cmd(0xD2); Data(0x33);
        Assert.Equal([0x33], Drain(expectAux: false));
        void Mouse(byte v) { Cmd(0xD4); Data(v); }
        Mouse(0xFF); Assert.Equal([0xFA, 0xAA, 0x00], Drain(expectAux: true));
        Mouse(0xF2); Assert.Equal([0xFA, 0x00], Drain());
        foreach (byte rate in new byte[] { 200, 100, 80 }) { Mouse(0xF3); Mouse(rate); }
        Assert.Equal([0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA], Drain());
        Mouse(0xF2); Assert.Equal([0xFA, 0x03], Drain()); // IntelliMouse
        Mouse(0xE8); Mouse(0x03); Mouse(0xE7);
        Assert.Equal([0xFA, 0xFA, 0xFA], Drain());
        Mouse(0xE9); Assert.Equal([0xFA, 0x10, 0x03, 80], Drain()); // stream, disabled, 2:1, no buttons
        Mouse(0xE6); Mouse(0xEA); Mouse(0xF4);
        Assert.Equal([0xFA, 0xFA, 0xFA], Drain());
        Mouse(0xAB); Assert.Equal([0xFE], Drain());
    }

    [Fact]
    public void PointerEventsBecomeRelativePacketsOnIrq12()
    {
        WriteCommandByte(0x47);
        void Mouse(byte v) { Cmd(0xD4); Data(v); }
        Mouse(0xF4); Drain();
        _i8042.PointerEvent(100, 100, 0); // the first position: no move
        Assert.Empty(Drain());
        _i8042.PointerEvent(110, 90, 1);  // right 10, up 10, left button
        Assert.True(_auxIrq.Level);
        Assert.Equal([0x09, 10, 10], Drain(expectAux: true));
        _i8042.PointerEvent(105, 95, 4);  // left 5, down 5, right button
        Assert.Equal([0x08 | 0x02 | 0x10 | 0x20, 0xFB, 0xFB], Drain());
        _i8042.PointerEvent(705, 95, 0);  // 600 right: split into packets of at most 255
        Assert.Equal([0x08, 255, 0, 0x08, 255, 0, 0x08, 90, 0], Drain());
        Mouse(0xF5); Drain();
        _i8042.PointerEvent(0, 0, 0);
        Assert.Empty(Drain()); // reporting off
    }

    [Fact]
    public void WheelNeedsTheIntelliMouseKnock()
    {
        WriteCommandByte(0x47);
        void Mouse(byte v) { Cmd(0xD4); Data(v); }
        foreach (byte rate in new byte[] { 200, 100, 80 }) { Mouse(0xF3); Mouse(rate); }
        Mouse(0xF4); Drain();
        _i8042.PointerEvent(5, 5, 0); Drain();
        _i8042.PointerEvent(5, 5, 0x08); // wheel up
        Assert.Equal([0x08, 0, 0, 0xFF], Drain());
        _i8042.PointerEvent(5, 5, 0x10); // wheel down
        Assert.Equal([0x08, 0, 0, 0x01], Drain());
    }

    [Fact]
    public void StateRoundTripsQueuesAndDevicesAndVersion1StillReads()
    {
        WriteCommandByte(0x07); // interrupts on, no translation
        Cmd(0xD4); Data(0xF4); Drain();
        Cmd(0xD4); Data(0xF3); // half-done mouse command
        Data(0xF0); Data(0x01); // keyboard in set 1
        _i8042.KeyEvent('z', true);
        var restoredIrq = new Line();
        var restored = new I8042(new Machine(), new Line(), restoredIrq);
        StateAssert.RoundTrips(_i8042, restored);
        Assert.True(restoredIrq.Level); // the mouse's ACK in the output buffer still raises IRQ 12
        var bytes = new List<byte>();
        Span<byte> b = stackalloc byte[1];
        while (true) { restored.Read(4, b); if ((b[0] & 1) == 0) break; restored.Read(0, b); bytes.Add(b[0]); }
        Assert.Equal([0xFA, 0xFA, 0xFA, 0x2C], bytes); // F3's ACK, F0's and 01's ACKs, then z in set 1
        StateAssert.RejectsDamagedRecords(_i8042, () => new I8042(new Machine()));

        // A version 1 record (before the PS/2 devices): command byte, status, output byte, pending command.
        var w = new StateWriter();
        new I8042State(0x47, 0x1D, 0xAB, 0x60).Write(w);
        var v1 = w.ToArray()[..5];
        var old = new I8042(new Machine());
        old.RestoreState(new StateReader(v1, "i8042"), 1);
        Assert.Equal(0x47, old.CaptureState().ControlByte);
        Assert.Equal(2, old.CaptureState().Keyboard.ScanSet);
        Assert.Equal((byte)0xAB, old.CaptureState().Output);
    }
}
