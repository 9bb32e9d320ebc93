using System.Text;

namespace KvmPS.Engine.Tests.Firmware;

/// <summary>
/// A raw disk image whose MBR boot sector prints a line to COM1 and writes a status to the debug-exit port 0xf4.
/// The 16-bit real-mode code is assembled by hand below (BIOS loads it at 0000:7C00).
/// </summary>
internal static class SeaBiosBootSector
{
    public const string Message = "KvmPS boot sector OK";
    /// <summary>The value written to port 0xf4: the VMM (and QEMU's isa-debug-exit) exits with (v &lt;&lt; 1) | 1 = 85.</summary>
    public const byte ExitValue = 0x2a;
    public const int ExitStatus = (ExitValue << 1) | 1;
    private const int LoadAddress = 0x7C00;
    private const int MessageOffset = 38;

    public static byte[] Code()
    {
        byte[] code =
        [
            0xFA,                   //  0: cli
            0x31, 0xC0,             //  1: xor ax, ax
            0x8E, 0xD8,             //  3: mov ds, ax
            0xBE, (LoadAddress + MessageOffset) & 0xFF, (LoadAddress + MessageOffset) >> 8, //  5: mov si, message
            0xAC,                   //  8: next: lodsb
            0x84, 0xC0,             //  9: test al, al
            0x74, 31 - 13,          // 11: jz done (31)
            0x88, 0xC3,             // 13: mov bl, al
            0xBA, 0xFD, 0x03,       // 15: mov dx, 0x3fd (line status register)
            0xEC,                   // 18: wait: in al, dx
            0xA8, 0x20,             // 19: test al, 0x20 (transmit holding register empty)
            0x74, 0xFB,             // 21: jz wait (18 - 23 = -5)
            0xBA, 0xF8, 0x03,       // 23: mov dx, 0x3f8 (COM1 data)
            0x88, 0xD8,             // 26: mov al, bl
            0xEE,                   // 28: out dx, al
            0xEB, 0xE9,             // 29: jmp next (8 - 31 = -23)
            0xB0, ExitValue,        // 31: done: mov al, ExitValue
            0xE6, 0xF4,             // 33: out 0xf4, al (debug exit)
            0xF4,                   // 35: hang: hlt
            0xEB, 0xFD,             // 36: jmp hang (35 - 38 = -3)
        ];
        if (code.Length != MessageOffset) throw new InvalidOperationException("boot sector layout changed: fix MessageOffset.");
        return [.. code, .. Encoding.ASCII.GetBytes(Message + "\r\n"), 0];
    }

    /// <summary>Writes a raw image of <paramref name="sizeBytes"/> with the boot sector in sector 0 (signature 55 AA).</summary>
    public static void WriteImage(string path, int sizeBytes = 1 << 20)
    {
        var image = new byte[sizeBytes];
        Code().CopyTo(image, 0);
        image[510] = 0x55;
        image[511] = 0xAA;
        File.WriteAllBytes(path, image);
    }
}
