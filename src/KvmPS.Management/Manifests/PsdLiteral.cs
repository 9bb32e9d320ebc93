using System.Globalization;
using System.Text;

namespace KvmPS.Management.Manifests;

/// <summary>
/// Writes values as PowerShell data-file literals that <see cref="PsdReader"/> and <c>Import-PowerShellDataFile</c>
/// read back to the same value. Strings are single-quoted unless they hold control characters; those go into a
/// double-quoted string with backtick escapes, so a manifest line never breaks inside a value.
/// </summary>
public static class PsdLiteral
{
    private static readonly string[] SizeSuffixes = { "PB", "TB", "GB", "MB", "KB" };

    public static string String(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Any(NeedsEscape) ? DoubleQuoted(value) : SingleQuoted(value);
    }

    public static string Boolean(bool value) => value ? "$true" : "$false";

    public static string Integer(long value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>A byte count with the largest PowerShell multiplier suffix that divides it (<c>256MB</c>), else plain digits.</summary>
    public static string Size(long bytes)
    {
        if (bytes > 0)
        {
            for (var i = 0; i < SizeSuffixes.Length; i++)
            {
                var unit = 1L << (10 * (SizeSuffixes.Length - i));
                if (bytes % unit == 0)
                    return (bytes / unit).ToString(CultureInfo.InvariantCulture) + SizeSuffixes[i];
            }
        }
        return Integer(bytes);
    }

    // Line breaks and other controls would be literal in a single-quoted string: a file re-saved with CRLF line
    // ends (or an editor trimming trailing blanks) would change the value. U+0085/U+2028/U+2029 are line breaks too.
    private static bool NeedsEscape(char c) => char.IsControl(c) || c is '\u2028' or '\u2029' || char.IsSurrogate(c);

    private static string SingleQuoted(string value)
    {
        var text = new StringBuilder(value.Length + 2).Append('\'');
        foreach (var c in value)
        {
            // PowerShell treats the typographic single quotes as quotes as well: each is escaped by doubling it.
            if (PsdCharacters.IsSingleQuote(c))
                text.Append(c);
            text.Append(c);
        }
        return text.Append('\'').ToString();
    }

    private static string DoubleQuoted(string value)
    {
        var text = new StringBuilder(value.Length + 8).Append('"');
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            switch (c)
            {
                case '\0': text.Append("`0"); break;
                case '\a': text.Append("`a"); break;
                case '\b': text.Append("`b"); break;
                case '\u001B': text.Append("`e"); break;
                case '\f': text.Append("`f"); break;
                case '\n': text.Append("`n"); break;
                case '\r': text.Append("`r"); break;
                case '\t': text.Append("`t"); break;
                case '\v': text.Append("`v"); break;
                case '`' or '$': text.Append('`').Append(c); break;
                default:
                    if (PsdCharacters.IsDoubleQuote(c))
                        text.Append('`').Append(c);
                    else if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
                        text.Append(c).Append(value[++i]);
                    else if (char.IsSurrogate(c))
                        throw new ArgumentException($"The string has an unpaired surrogate (U+{(int)c:X4}) at index {i}; it cannot be written to a manifest.", nameof(value));
                    else if (NeedsEscape(c))
                        text.Append("`u{").Append(((int)c).ToString("X", CultureInfo.InvariantCulture)).Append('}');
                    else
                        text.Append(c);
                    break;
            }
        }
        return text.Append('"').ToString();
    }
}
