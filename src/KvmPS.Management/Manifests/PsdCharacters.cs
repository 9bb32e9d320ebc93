namespace KvmPS.Management.Manifests;

/// <summary>Character classes of the PowerShell tokenizer that the data-file reader needs.</summary>
internal static class PsdCharacters
{
    // PowerShell treats typographic quotes as quotes too, so files edited in word processors still parse.
    public static bool IsSingleQuote(char c) => c is '\'' or '\u2018' or '\u2019' or '\u201A' or '\u201B';
    public static bool IsDoubleQuote(char c) => c is '"' or '\u201C' or '\u201D' or '\u201E';

    public static bool IsNewline(char c) => c is '\n' or '\r';

    /// <summary>Blank space other than line breaks (PowerShell also accepts NBSP, NEL-less Unicode spaces).</summary>
    public static bool IsBlank(char c) => c is ' ' or '\t' or '\f' or '\v' or '\u00A0' || (c > 0x7F && char.IsWhiteSpace(c) && c is not '\u0085' and not '\u2028' and not '\u2029');

    /// <summary>Characters that may follow <c>$</c> to form a variable name.</summary>
    public static bool IsVariableChar(char c) => char.IsLetterOrDigit(c) || c is '_' or '?' or ':';

    /// <summary>Characters that make <c>$</c> start an expansion inside a double-quoted string.</summary>
    public static bool StartsExpansion(char c) => char.IsLetterOrDigit(c) || c is '_' or '?' or '^' or '$' or '{' or '(' or ':';

    /// <summary>Characters that end a bare word (command name or hashtable key).</summary>
    public static bool EndsBareWord(char c) =>
        c == '\0' || IsBlank(c) || IsNewline(c) || c is ';' or ',' or '(' or ')' or '{' or '}' or '|' or '&' or '=' or '#'
        || IsSingleQuote(c) || IsDoubleQuote(c);

    /// <summary>Characters after which a numeric literal is complete (anything else glues it into a word).</summary>
    public static bool EndsNumber(char c) =>
        c == '\0' || IsBlank(c) || IsNewline(c) || c is ';' or ',' or '(' or ')' or '{' or '}' or '[' or ']' or '|' or '&'
            or '+' or '-' or '*' or '/' or '%' or '=' or '<' or '>' or '!' or '.' or '#';

    public static bool IsOperatorStart(char c) => c is '+' or '-' or '*' or '/' or '%' or '=' or '<' or '>' or '!' or '|' or '&' or '?';
}
