using KvmPS.Devices.Display;

namespace KvmPS.Engine.Tests.Devices.Display;

/// <summary>
/// Reads text back from a framebuffer the way a person would: the VGA BIOS draws characters as 8x16 glyphs of its
/// own font, so each 8x16 cell with exactly two colours is compared, both ways round (normal and highlighted), with
/// every glyph of that font. The font is found in the ROM image by the glyph of 'A' of the IBM VGA 8x16 font.
/// </summary>
internal sealed class ScreenText
{
    private static readonly byte[] GlyphA = [0, 0, 0x10, 0x38, 0x6C, 0xC6, 0xC6, 0xFE, 0xC6, 0xC6, 0xC6, 0xC6, 0, 0, 0, 0];
    private readonly Dictionary<ulong, char> _glyphs = new();

    public ScreenText(byte[] romImage)
    {
        int a = romImage.AsSpan().IndexOf(GlyphA);
        if (a < 0x41 * 16) throw new InvalidOperationException("the ROM holds no 8x16 VGA font");
        int font = a - 0x41 * 16;
        for (int c = 0x21; c < 0x7F; c++)
            _glyphs.TryAdd(Key(romImage.AsSpan(font + c * 16, 16)), (char)c);
    }

    private static ulong Key(ReadOnlySpan<byte> rows)
    {
        ulong h = 14695981039346656037UL; // FNV-1a over the 16 rows
        foreach (var r in rows) h = (h ^ r) * 1099511628211UL;
        return h;
    }

    /// <summary>The screen as lines of text ('?' for a two-colour cell that is no glyph, ' ' for a plain one).</summary>
    public string[] Read(IFramebuffer fb)
    {
        var mode = fb.Mode;
        if (mode.IsBlank) return [];
        var pixels = new uint[mode.Width * mode.Height];
        fb.CopyPixels(mode, 0, 0, mode.Width, mode.Height, pixels);
        var lines = new string[mode.Height / 16];
        Span<byte> rows = stackalloc byte[16];
        for (int ty = 0; ty < lines.Length; ty++)
        {
            var line = new char[mode.Width / 8];
            for (int tx = 0; tx < line.Length; tx++)
            {
                uint first = pixels[ty * 16 * mode.Width + tx * 8];
                uint? second = null;
                bool more = false;
                for (int y = 0; y < 16 && !more; y++)
                    for (int x = 0; x < 8; x++)
                    {
                        uint p = pixels[(ty * 16 + y) * mode.Width + tx * 8 + x];
                        if (p == first) continue;
                        if (second is null) second = p;
                        else if (p != second) { more = true; break; }
                    }
                if (more) { line[tx] = '#'; continue; }
                if (second is null) { line[tx] = ' '; continue; }
                char found = '?';
                foreach (uint fg in new[] { first, second.Value })
                {
                    for (int y = 0; y < 16; y++)
                    {
                        byte b = 0;
                        for (int x = 0; x < 8; x++)
                            if (pixels[(ty * 16 + y) * mode.Width + tx * 8 + x] == fg) b |= (byte)(0x80 >> x);
                        rows[y] = b;
                    }
                    if (_glyphs.TryGetValue(Key(rows), out char c)) { found = c; break; }
                }
                line[tx] = found;
            }
            lines[ty] = new string(line).TrimEnd();
        }
        return lines;
    }

    /// <summary>Writes the current picture as a binary PPM (P6) for people to look at.</summary>
    public static void SavePpm(IFramebuffer fb, string path)
    {
        var mode = fb.Mode;
        if (mode.IsBlank) return;
        var pixels = new uint[mode.Width * mode.Height];
        fb.CopyPixels(mode, 0, 0, mode.Width, mode.Height, pixels);
        using var f = File.Create(path);
        var header = System.Text.Encoding.ASCII.GetBytes($"P6\n{mode.Width} {mode.Height}\n255\n");
        f.Write(header);
        var rgb = new byte[pixels.Length * 3];
        for (int i = 0; i < pixels.Length; i++) { rgb[3 * i] = (byte)(pixels[i] >> 16); rgb[3 * i + 1] = (byte)(pixels[i] >> 8); rgb[3 * i + 2] = (byte)pixels[i]; }
        f.Write(rgb);
    }
}
