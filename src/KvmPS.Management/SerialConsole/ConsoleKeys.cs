using System.Text;

namespace KvmPS.Management.SerialConsole;

/// <summary>What a key typed in a terminal sends to the guest's serial console (shared by Connect-KvmConsole and `kvmps vm console`).</summary>
public static class ConsoleKeys
{
    public static byte[] ToBytes(ConsoleKeyInfo key)
    {
        // Ctrl-] (detach) arrives as 0x1D on some terminals, as ']' with Control on others.
        if (key.KeyChar == (char)ConsoleBridge.DetachByte || (key.Modifiers.HasFlag(ConsoleModifiers.Control) && key.Key == ConsoleKey.Oem6))
            return new[] { ConsoleBridge.DetachByte };
        return key.Key switch
        {
            ConsoleKey.Enter => new[] { (byte)'\r' },
            ConsoleKey.Backspace => new byte[] { 0x7F },
            ConsoleKey.UpArrow => "\u001b[A"u8.ToArray(),
            ConsoleKey.DownArrow => "\u001b[B"u8.ToArray(),
            ConsoleKey.RightArrow => "\u001b[C"u8.ToArray(),
            ConsoleKey.LeftArrow => "\u001b[D"u8.ToArray(),
            _ when key.KeyChar != '\0' => Encoding.UTF8.GetBytes(key.KeyChar.ToString()),
            _ => Array.Empty<byte>(),
        };
    }
}
