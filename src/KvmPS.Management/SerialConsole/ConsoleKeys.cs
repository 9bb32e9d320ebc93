using System.Text;

namespace KvmPS.Management.SerialConsole;

/// <summary>What a key typed in a terminal sends to the guest's serial console, as a serial terminal would.</summary>
public static class ConsoleKeys
{
    /// <summary>Ctrl-] (GS), the detach key, as in telnet and virsh.</summary>
    public const byte DetachByte = 0x1D;

    public static byte[] ToBytes(ConsoleKeyInfo key)
    {
        if (IsDetach(key))
            return new[] { DetachByte };
        switch (key.Key)
        {
            case ConsoleKey.Enter: return new[] { (byte)'\r' };
            case ConsoleKey.Backspace: return new byte[] { 0x7F };
            case ConsoleKey.UpArrow: return "\u001b[A"u8.ToArray();
            case ConsoleKey.DownArrow: return "\u001b[B"u8.ToArray();
            case ConsoleKey.RightArrow: return "\u001b[C"u8.ToArray();
            case ConsoleKey.LeftArrow: return "\u001b[D"u8.ToArray();
            case ConsoleKey.Home: return "\u001b[H"u8.ToArray();
            case ConsoleKey.End: return "\u001b[F"u8.ToArray();
            case ConsoleKey.Insert: return "\u001b[2~"u8.ToArray();
            case ConsoleKey.Delete: return "\u001b[3~"u8.ToArray();
            case ConsoleKey.PageUp: return "\u001b[5~"u8.ToArray();
            case ConsoleKey.PageDown: return "\u001b[6~"u8.ToArray();
        }
        if (key.KeyChar != '\0')
            return Encoding.UTF8.GetBytes(key.KeyChar.ToString());
        if (key.Modifiers.HasFlag(ConsoleModifiers.Control) && ControlByte(key.Key) is { } control)
            return new[] { control };
        return Array.Empty<byte>();
    }

    /// <summary>
    /// True for Ctrl-], however the terminal and .NET deliver it: the byte 0x1D as KeyChar; ']' (Oem6) with
    /// Control; or, as .NET 10 on Linux decodes 0x1D from a terminal, <c>Key=D5, Modifiers=Control, KeyChar=0</c>
    /// (the VT100 convention that Ctrl-3..Ctrl-7 send 0x1B..0x1F).
    /// </summary>
    public static bool IsDetach(ConsoleKeyInfo key) =>
        key.KeyChar == (char)DetachByte
        || (key.Modifiers.HasFlag(ConsoleModifiers.Control) && key.Key is ConsoleKey.Oem6 or ConsoleKey.D5);

    /// <summary>The C0 control byte a Ctrl+key sends when .NET reports the key with no character.</summary>
    private static byte? ControlByte(ConsoleKey key) => key switch
    {
        >= ConsoleKey.A and <= ConsoleKey.Z => (byte)(key - ConsoleKey.A + 1),
        ConsoleKey.D2 or ConsoleKey.Spacebar => 0x00,
        ConsoleKey.D3 or ConsoleKey.Oem4 => 0x1B,
        ConsoleKey.D4 or ConsoleKey.Oem5 => 0x1C,
        ConsoleKey.D6 => 0x1E,
        ConsoleKey.D7 or ConsoleKey.OemMinus => 0x1F,
        ConsoleKey.D8 => 0x7F,
        _ => null,
    };
}
