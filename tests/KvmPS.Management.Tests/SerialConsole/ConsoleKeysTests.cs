using KvmPS.Management.SerialConsole;

namespace KvmPS.Management.Tests.SerialConsole;

public sealed class ConsoleKeysTests
{
    private static ConsoleKeyInfo Ctrl(char c, ConsoleKey key) => new(c, key, shift: false, alt: false, control: true);

    [Fact]
    public void Ctrl_right_bracket_detaches_whichever_way_the_terminal_and_dotnet_deliver_it()
    {
        // .NET 10 on Linux decodes the 0x1D a terminal sends for Ctrl-] as Ctrl+5 with no character (regression:
        // this produced no bytes at all, so the user could not detach).
        Assert.Equal([ConsoleKeys.DetachByte], ConsoleKeys.ToBytes(Ctrl('\0', ConsoleKey.D5)));
        Assert.Equal([ConsoleKeys.DetachByte], ConsoleKeys.ToBytes(Ctrl('\x1d', ConsoleKey.Oem6)));
        Assert.Equal([ConsoleKeys.DetachByte], ConsoleKeys.ToBytes(Ctrl(']', ConsoleKey.Oem6)));
        Assert.Equal([ConsoleKeys.DetachByte], ConsoleKeys.ToBytes(Ctrl('\0', ConsoleKey.Oem6)));
        Assert.Equal([ConsoleKeys.DetachByte], ConsoleKeys.ToBytes(new ConsoleKeyInfo('\x1d', default, false, false, false)));
        Assert.True(ConsoleKeys.IsDetach(Ctrl('\0', ConsoleKey.D5)));
        Assert.False(ConsoleKeys.IsDetach(new ConsoleKeyInfo('5', ConsoleKey.D5, false, false, false)));
        Assert.False(ConsoleKeys.IsDetach(new ConsoleKeyInfo(']', ConsoleKey.Oem6, false, false, false)));
    }

    [Fact]
    public void Control_keys_without_a_character_send_their_c0_byte()
    {
        Assert.Equal([0x03], ConsoleKeys.ToBytes(Ctrl('\0', ConsoleKey.C)));
        Assert.Equal([0x03], ConsoleKeys.ToBytes(Ctrl('\x03', ConsoleKey.C)));
        Assert.Equal([0x04], ConsoleKeys.ToBytes(Ctrl('\0', ConsoleKey.D)));
        Assert.Equal([0x1A], ConsoleKeys.ToBytes(Ctrl('\0', ConsoleKey.Z)));
        Assert.Equal([0x00], ConsoleKeys.ToBytes(Ctrl('\0', ConsoleKey.D2)));
        Assert.Equal([0x1C], ConsoleKeys.ToBytes(Ctrl('\0', ConsoleKey.D4)));
        Assert.Equal([0x1B], ConsoleKeys.ToBytes(Ctrl('\0', ConsoleKey.D3)));
    }

    [Fact]
    public void Keys_become_what_a_serial_terminal_sends()
    {
        Assert.Equal("\r"u8.ToArray(), ConsoleKeys.ToBytes(new ConsoleKeyInfo('\r', ConsoleKey.Enter, false, false, false)));
        Assert.Equal(new byte[] { 0x7F }, ConsoleKeys.ToBytes(new ConsoleKeyInfo('\b', ConsoleKey.Backspace, false, false, false)));
        Assert.Equal("\u001b[A"u8.ToArray(), ConsoleKeys.ToBytes(new ConsoleKeyInfo('\0', ConsoleKey.UpArrow, false, false, false)));
        Assert.Equal("\u001b[3~"u8.ToArray(), ConsoleKeys.ToBytes(new ConsoleKeyInfo('\0', ConsoleKey.Delete, false, false, false)));
        Assert.Equal("\t"u8.ToArray(), ConsoleKeys.ToBytes(new ConsoleKeyInfo('\t', ConsoleKey.Tab, false, false, false)));
        Assert.Equal("é"u8.ToArray(), ConsoleKeys.ToBytes(new ConsoleKeyInfo('é', ConsoleKey.E, false, false, false)));
        Assert.Equal("5"u8.ToArray(), ConsoleKeys.ToBytes(new ConsoleKeyInfo('5', ConsoleKey.D5, false, false, false)));
        Assert.Empty(ConsoleKeys.ToBytes(new ConsoleKeyInfo('\0', ConsoleKey.F5, false, false, false)));
    }
}
