using System.Globalization;
using System.Text;

namespace KvmPS.Management.Manifests;

/// <summary>
/// The four PowerShell string forms. Double-quoted forms process backtick escapes; any <c>$</c> that would
/// expand (a variable or subexpression) is rejected because data files may not evaluate anything.
/// </summary>
internal static class PsdStringScanner
{
    /// <summary><c>'...'</c> with <c>''</c> as an escaped quote. Cursor is on the opening quote.</summary>
    public static string ScanSingleQuoted(PsdTextCursor cursor)
    {
        var start = cursor.Position;
        cursor.Advance();
        var text = new StringBuilder();
        while (true)
        {
            if (cursor.AtEnd)
                throw cursor.Error(start, "The string is missing its terminator: '");
            var c = cursor.Current;
            cursor.Advance();
            if (PsdCharacters.IsSingleQuote(c))
            {
                if (!PsdCharacters.IsSingleQuote(cursor.Current))
                    return text.ToString();
                text.Append(cursor.Current);
                cursor.Advance();
                continue;
            }
            text.Append(c);
        }
    }

    /// <summary><c>"..."</c> with backtick escapes and <c>""</c>. Cursor is on the opening quote.</summary>
    public static string ScanDoubleQuoted(PsdTextCursor cursor)
    {
        var start = cursor.Position;
        cursor.Advance();
        var text = new StringBuilder();
        while (true)
        {
            if (cursor.AtEnd)
                throw cursor.Error(start, "The string is missing its terminator: \"");
            var c = cursor.Current;
            if (PsdCharacters.IsDoubleQuote(c))
            {
                cursor.Advance();
                if (!PsdCharacters.IsDoubleQuote(cursor.Current))
                    return text.ToString();
                text.Append(cursor.Current);
                cursor.Advance();
                continue;
            }
            if (!TryScanExpandableSpecial(cursor, text, start, "\""))
            {
                text.Append(c);
                cursor.Advance();
            }
        }
    }

    /// <summary>
    /// <c>@'...'@</c> / <c>@"..."@</c>. PowerShell's rules: nothing but blanks may follow the opener on its
    /// line, the closer must be at the very start of a line, and the line break before the closer is not
    /// part of the value. Cursor is on the <c>@</c>.
    /// </summary>
    public static string ScanHereString(PsdTextCursor cursor)
    {
        var start = cursor.Position;
        cursor.Advance();
        var quote = cursor.Current;
        var expandable = PsdCharacters.IsDoubleQuote(quote);
        Func<char, bool> isQuote = expandable ? PsdCharacters.IsDoubleQuote : PsdCharacters.IsSingleQuote;
        var terminator = expandable ? "\"@" : "'@";
        cursor.Advance();

        while (PsdCharacters.IsBlank(cursor.Current))
            cursor.Advance();
        if (cursor.AtEnd)
            throw cursor.Error(start, $"The here-string is missing its terminator: {terminator}");
        if (!cursor.IsAtNewline)
            throw cursor.Error("No characters are allowed after a here-string header but before the end of the line");
        cursor.AdvanceNewline();

        var text = new StringBuilder();
        var lengthBeforeLastLineBreak = 0;
        var atLineStart = true;
        while (true)
        {
            if (atLineStart)
            {
                atLineStart = false;
                if (isQuote(cursor.Current) && cursor.Peek() == '@')
                {
                    cursor.Advance(2);
                    text.Length = lengthBeforeLastLineBreak;
                    return text.ToString();
                }
                var mark = cursor.Mark();
                while (PsdCharacters.IsBlank(cursor.Current))
                    cursor.Advance();
                if (isQuote(cursor.Current) && cursor.Peek() == '@')
                    throw cursor.Error("White space is not allowed before the here-string terminator");
                cursor.Reset(mark);
            }
            if (cursor.AtEnd)
                throw cursor.Error(start, $"The here-string is missing its terminator: {terminator}");
            if (cursor.IsAtNewline)
            {
                lengthBeforeLastLineBreak = text.Length;
                if (cursor.Current == '\r' && cursor.Peek() == '\n')
                    text.Append('\r');
                text.Append('\n');
                cursor.AdvanceNewline();
                atLineStart = true;
                continue;
            }
            if (expandable && TryScanExpandableSpecial(cursor, text, start, terminator))
                continue;
            text.Append(cursor.Current);
            cursor.Advance();
        }
    }

    /// <summary>Handles a backtick escape or rejects a <c>$</c> expansion; false for ordinary characters.</summary>
    private static bool TryScanExpandableSpecial(PsdTextCursor cursor, StringBuilder text, SourcePosition stringStart, string terminator)
    {
        var c = cursor.Current;
        if (c == '`')
        {
            cursor.Advance();
            if (cursor.AtEnd)
                throw cursor.Error(stringStart, $"The string is missing its terminator: {terminator}");
            ScanEscape(cursor, text);
            return true;
        }
        if (c == '$' && PsdCharacters.StartsExpansion(cursor.Peek()))
            throw ExpansionError(cursor);
        return false;
    }

    private static void ScanEscape(PsdTextCursor cursor, StringBuilder text)
    {
        var escapePosition = cursor.Position;
        var c = cursor.Current;
        switch (c)
        {
            case '0': text.Append('\0'); break;
            case 'a': text.Append('\a'); break;
            case 'b': text.Append('\b'); break;
            case 'e': text.Append('\u001B'); break;
            case 'f': text.Append('\f'); break;
            case 'n': text.Append('\n'); break;
            case 'r': text.Append('\r'); break;
            case 't': text.Append('\t'); break;
            case 'v': text.Append('\v'); break;
            case 'u' when cursor.Peek() == '{':
                cursor.Advance(2);
                var hex = new StringBuilder();
                while (char.IsAsciiHexDigit(cursor.Current) && hex.Length < 7)
                {
                    hex.Append(cursor.Current);
                    cursor.Advance();
                }
                if (cursor.Current != '}' || hex.Length is 0 or > 6
                    || !int.TryParse(hex.ToString(), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var codePoint)
                    || codePoint > 0x10FFFF || codePoint is >= 0xD800 and <= 0xDFFF)
                    throw cursor.Error(escapePosition, "Invalid Unicode escape: expected `u{X} with 1 to 6 hex digits naming a code point up to 10FFFF");
                text.Append(char.ConvertFromUtf32(codePoint));
                cursor.Advance();
                return;
            default:
                // Any other escaped character stands for itself: `" `` `$ `' and an escaped line break.
                if (c == '\r' && cursor.Peek() == '\n')
                {
                    text.Append("\r\n");
                    cursor.AdvanceNewline();
                    return;
                }
                text.Append(c);
                break;
        }
        cursor.Advance();
    }

    private static ManifestParseException ExpansionError(PsdTextCursor cursor)
    {
        var position = cursor.Position;
        var next = cursor.Peek();
        if (next == '(')
            return cursor.Error(position, "Subexpressions '$(...)' are not allowed in a data file string; escape the '$' with a backtick or use a single-quoted string");
        var name = new StringBuilder("$");
        var i = 1;
        if (next == '{')
        {
            while (cursor.Peek(i) is not '\0' and not '}' && !PsdCharacters.IsNewline(cursor.Peek(i)))
                name.Append(cursor.Peek(i++));
            name.Append('}');
        }
        else if (next is '$' or '^' or '?')
        {
            name.Append(next);
        }
        else
        {
            while (PsdCharacters.IsVariableChar(cursor.Peek(i)))
                name.Append(cursor.Peek(i++));
        }
        return cursor.Error(position, $"Variable expansion '{name}' is not allowed in a data file string; escape the '$' with a backtick or use a single-quoted string");
    }
}
