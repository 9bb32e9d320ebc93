using KvmPS.Management.SerialConsole;

namespace KvmPS.Management.Tests;

public class SerialConsoleKeysTests
{
    [Fact]
    public void CtrlRightBracketDetachesWhicheverWayTheTerminalSendsIt()
    {
        Assert.Equal([ConsoleBridge.DetachByte], ConsoleKeys.ToBytes(new ConsoleKeyInfo('\x1d', ConsoleKey.Oem6, false, false, true)));
        Assert.Equal([ConsoleBridge.DetachByte], ConsoleKeys.ToBytes(new ConsoleKeyInfo(']', ConsoleKey.Oem6, false, false, true)));
    }

    [Fact]
    public void KeysBecomeWhatASerialTerminalSends()
    {
        Assert.Equal("\r"u8.ToArray(), ConsoleKeys.ToBytes(new ConsoleKeyInfo('\r', ConsoleKey.Enter, false, false, false)));
        Assert.Equal(new byte[] { 0x7F }, ConsoleKeys.ToBytes(new ConsoleKeyInfo('\b', ConsoleKey.Backspace, false, false, false)));
        Assert.Equal("\u001b[A"u8.ToArray(), ConsoleKeys.ToBytes(new ConsoleKeyInfo('\0', ConsoleKey.UpArrow, false, false, false)));
        Assert.Equal("é"u8.ToArray(), ConsoleKeys.ToBytes(new ConsoleKeyInfo('é', ConsoleKey.E, false, false, false)));
        Assert.Empty(ConsoleKeys.ToBytes(new ConsoleKeyInfo('\0', ConsoleKey.F5, false, false, false)));
    }
}
