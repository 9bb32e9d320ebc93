using System.Text;

namespace KvmPS.HelpGen;

/// <summary>
/// Drops markdown code-span marks for Get-Help's plain text. A span opens with a run of N backticks and closes
/// with the next run of exactly N (CommonMark), so <c>`` `n ``</c> shows as <c>`n</c>: PowerShell's own escape
/// character must survive, which removing every backtick did not allow.
/// </summary>
public static class InlineCode
{
    public static string Strip(string text)
    {
        var builder = new StringBuilder(text.Length);
        var i = 0;
        while (i < text.Length)
        {
            if (text[i] != '`')
            {
                builder.Append(text[i++]);
                continue;
            }
            var run = RunLength(text, i);
            var close = FindClosing(text, i + run, run);
            if (close < 0)
            {
                // No closing run: the backticks are literal text.
                builder.Append(text, i, run);
                i += run;
                continue;
            }
            var content = text[(i + run)..close];
            // One space on both sides pads a span whose content starts or ends with a backtick.
            if (content.Length >= 2 && content[0] == ' ' && content[^1] == ' ' && content.Trim().Length > 0)
                content = content[1..^1];
            builder.Append(content);
            i = close + run;
        }
        return builder.ToString();
    }

    private static int RunLength(string text, int start)
    {
        var end = start;
        while (end < text.Length && text[end] == '`')
            end++;
        return end - start;
    }

    private static int FindClosing(string text, int from, int run)
    {
        var i = from;
        while (i < text.Length)
        {
            if (text[i] != '`')
            {
                i++;
                continue;
            }
            var length = RunLength(text, i);
            if (length == run)
                return i;
            i += length;
        }
        return -1;
    }
}
