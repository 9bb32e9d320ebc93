using BigGustave;

namespace KvmPS.Management.Display;

/// <summary>Writes a <see cref="RfbFrame"/> as PNG (BigGustave: RGB, no alpha, 8 bits a channel).</summary>
public static class ScreenshotWriter
{
    public static byte[] ToPng(RfbFrame frame)
    {
        ArgumentNullException.ThrowIfNull(frame);
        // BGRX is BigGustave's BGRA layout; without an alpha channel the fourth byte is not read.
        var builder = PngBuilder.FromBgra32Pixels(frame.Bgrx, frame.Width, frame.Height, false);
        using var output = new MemoryStream();
        builder.Save(output);
        return output.ToArray();
    }

    /// <summary>Writes the PNG to <paramref name="path"/> through a temporary file beside it, so a reader never sees half a picture.</summary>
    public static void Save(RfbFrame frame, string path)
    {
        var png = ToPng(frame);
        var full = Path.GetFullPath(path);
        var temporary = full + ".tmp-" + Environment.ProcessId;
        File.WriteAllBytes(temporary, png);
        File.Move(temporary, full, overwrite: true);
    }
}
