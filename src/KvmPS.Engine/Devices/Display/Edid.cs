using System.Text;

namespace KvmPS.Devices.Display;

/// <summary>
/// The 128-byte EDID 1.4 base block the display offers at BAR 2 offset 0 (Linux's bochs driver reads it; SeaBIOS's
/// vgabios copies it for VBE/DDC): one preferred detailed timing for the configured mode (reduced-blanking style
/// timings at 60 Hz), the monitor name "KvmPS", a range-limits descriptor, and the checksum.
/// </summary>
public static class Edid
{
    public const int Size = 128;
    public const int MaxDimension = 4095; // a detailed timing holds 12-bit active sizes

    public static byte[] Build(int width, int height)
    {
        if (width is < 320 or > MaxDimension) throw new ArgumentOutOfRangeException(nameof(width), $"EDID width {width} is outside 320-{MaxDimension}.");
        if (height is < 200 or > MaxDimension) throw new ArgumentOutOfRangeException(nameof(height), $"EDID height {height} is outside 200-{MaxDimension}.");
        var e = new byte[Size];
        byte[] header = [0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00];
        header.CopyTo(e, 0);
        // Manufacturer "KVM": three 5-bit letters (A = 1), big-endian.
        ushort vendor = (ushort)((('K' - '@') << 10) | (('V' - '@') << 5) | ('M' - '@'));
        e[8] = (byte)(vendor >> 8); e[9] = (byte)vendor;
        e[10] = 0x11; e[11] = 0x11;        // product code 0x1111, as the PCI device id
        e[16] = 0; e[17] = 36;            // week unknown, model year 1990 + 36
        e[18] = 1; e[19] = 4;             // EDID 1.4
        e[20] = 0xA5;                      // digital, 8 bits per colour, DisplayPort
        int widthCm = Math.Max(1, width * 254 / 960 / 10), heightCm = Math.Max(1, height * 254 / 960 / 10); // ~96 dpi
        e[21] = (byte)Math.Min(255, widthCm); e[22] = (byte)Math.Min(255, heightCm);
        e[23] = 120;                       // gamma 2.2: (2.2 × 100) − 100
        e[24] = 0x06;                      // sRGB default colour space, preferred timing is native
        // Chromaticity of sRGB (red 0.640/0.330, green 0.300/0.600, blue 0.150/0.060, white 0.3127/0.3290), 10-bit.
        WriteChromaticity(e, [(0.640, 0.330), (0.300, 0.600), (0.150, 0.060), (0.3127, 0.3290)]);
        e[35] = 0x21; e[36] = 0x08; e[37] = 0x00; // established: 640x480@60, 800x600@60, 1024x768@60
        for (int i = 38; i < 54; i++) e[i] = 0x01; // no standard timings
        WriteDetailedTiming(e.AsSpan(54, 18), width, height);
        WriteText(e.AsSpan(72, 18), 0xFC, "KvmPS");
        WriteRangeLimits(e.AsSpan(90, 18));
        e[108 + 3] = 0x10;                 // dummy descriptor
        e[126] = 0;                        // no extension blocks
        e[127] = Checksum(e);
        return e;
    }

    /// <summary>The byte that makes the block's bytes sum to 0 mod 256.</summary>
    public static byte Checksum(ReadOnlySpan<byte> block)
    {
        int sum = 0;
        for (int i = 0; i < Size - 1; i++) sum += block[i];
        return (byte)(256 - (sum & 0xFF));
    }

    /// <summary>The preferred mode of a block built by <see cref="Build"/>.</summary>
    public static (int Width, int Height) PreferredMode(ReadOnlySpan<byte> block) =>
        (block[56] | (block[58] & 0xF0) << 4, block[59] | (block[61] & 0xF0) << 4);

    private static void WriteChromaticity(byte[] e, (double X, double Y)[] points)
    {
        var v = points.SelectMany(p => new[] { (int)Math.Round(p.X * 1024), (int)Math.Round(p.Y * 1024) }).Select(x => Math.Min(x, 1023)).ToArray();
        // Low two bits: red/green in byte 25, blue/white in byte 26; high eight bits in 27-34.
        e[25] = (byte)((v[0] & 3) << 6 | (v[1] & 3) << 4 | (v[2] & 3) << 2 | (v[3] & 3));
        e[26] = (byte)((v[4] & 3) << 6 | (v[5] & 3) << 4 | (v[6] & 3) << 2 | (v[7] & 3));
        for (int i = 0; i < 8; i++) e[27 + i] = (byte)(v[i] >> 2);
    }

    private static void WriteDetailedTiming(Span<byte> d, int width, int height)
    {
        const int hBlank = 160, hFront = 48, hSync = 32, vFront = 3, vSync = 6;
        int vBlank = Math.Max(23, height / 30);
        long clock10kHz = (long)(width + hBlank) * (height + vBlank) * 60 / 10_000;
        clock10kHz = Math.Min(clock10kHz, ushort.MaxValue); // a very large mode gets a lower refresh rate
        d[0] = (byte)clock10kHz; d[1] = (byte)(clock10kHz >> 8);
        d[2] = (byte)width; d[3] = hBlank & 0xFF; d[4] = (byte)((width >> 8) << 4 | (hBlank >> 8));
        d[5] = (byte)height; d[6] = (byte)vBlank; d[7] = (byte)((height >> 8) << 4 | (vBlank >> 8));
        d[8] = hFront; d[9] = hSync; d[10] = vFront << 4 | vSync; d[11] = 0;
        int widthMm = width * 254 / 960, heightMm = height * 254 / 960;
        d[12] = (byte)widthMm; d[13] = (byte)heightMm; d[14] = (byte)((widthMm >> 8) << 4 | (heightMm >> 8) & 0xF);
        d[15] = 0; d[16] = 0;
        d[17] = 0x1E;                      // digital separate sync, +hsync, +vsync, not interlaced
    }

    private static void WriteText(Span<byte> d, byte tag, string text)
    {
        d[3] = tag;
        var bytes = Encoding.ASCII.GetBytes(text);
        for (int i = 0; i < 13; i++) d[5 + i] = i < bytes.Length ? bytes[i] : i == bytes.Length ? (byte)0x0A : (byte)0x20;
    }

    private static void WriteRangeLimits(Span<byte> d)
    {
        d[3] = 0xFD;
        d[5] = 50; d[6] = 125;             // vertical 50-125 Hz
        d[7] = 30; d[8] = 160;             // horizontal 30-160 kHz
        d[9] = 65;                         // 650 MHz maximum pixel clock
        d[10] = 0x01;                      // range limits only (no secondary timing formula)
        d[11] = 0x0A;
        for (int i = 12; i < 18; i++) d[i] = 0x20;
    }
}
