using System.Text;

namespace KvmPS.Management.SerialConsole;

/// <summary>Reads a VM's serial console log (<c>serial.log</c>, appended by kvmps-vmm) as lines.</summary>
public static class SerialLogReader
{
    /// <summary>
    /// The log's lines; with <paramref name="tail"/> only the last that many (read from the end, so a large log
    /// costs little). A missing log (the VM never started) has no lines. Carriage returns are dropped; the final
    /// line is returned even without a newline.
    /// </summary>
    public static IReadOnlyList<string> ReadLines(string path, int? tail = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (tail is < 0)
            throw new ArgumentOutOfRangeException(nameof(tail), tail, "must not be negative");
        if (tail == 0)
            return Array.Empty<string>();
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return Array.Empty<string>();
        }
        using (stream)
        {
            var start = tail is { } n ? FindTailStart(stream, n) : 0;
            stream.Seek(start, SeekOrigin.Begin);
            using var reader = new StreamReader(stream, new UTF8Encoding(false), detectEncodingFromByteOrderMarks: false);
            var lines = new List<string>();
            while (reader.ReadLine() is { } line)
                lines.Add(line.Replace("\r", "", StringComparison.Ordinal));
            if (tail is { } count && lines.Count > count)
                lines.RemoveRange(0, lines.Count - count);
            return lines;
        }
    }

    /// <summary>Offset where the last <paramref name="lines"/> lines start (a trailing newline does not start a line).</summary>
    private static long FindTailStart(FileStream stream, int lines)
    {
        var length = stream.Length;
        var buffer = new byte[64 * 1024];
        var position = length;
        var newlines = 0;
        var skippedTrailing = false;
        while (position > 0)
        {
            var chunk = (int)Math.Min(buffer.Length, position);
            position -= chunk;
            stream.Seek(position, SeekOrigin.Begin);
            stream.ReadExactly(buffer, 0, chunk);
            for (var i = chunk - 1; i >= 0; i--)
            {
                if (buffer[i] != (byte)'\n')
                    continue;
                if (!skippedTrailing && position + i == length - 1)
                {
                    skippedTrailing = true;
                    continue;
                }
                if (++newlines == lines)
                    return position + i + 1;
            }
        }
        return 0;
    }
}
