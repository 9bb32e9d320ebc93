namespace KvmPS.Management.Selection;

/// <summary>
/// A VM name or a PowerShell-style wildcard (<c>*</c>, <c>?</c>, <c>[abc]</c>, <c>[a-z]</c>, backtick escapes),
/// matched case-insensitively like PowerShell's <c>-like</c>. Shared by the cmdlets (<c>Get-KvmVm web*</c>) and
/// the CLI (<c>kvmps vm list 'web*'</c>) so both select the same VMs.
/// </summary>
public sealed class VmNamePattern
{
    private readonly Element[] _elements;

    public VmNamePattern(string pattern)
    {
        Text = pattern ?? throw new ArgumentNullException(nameof(pattern));
        _elements = Compile(pattern, out var hasWildcards);
        HasWildcards = hasWildcards;
    }

    public string Text { get; }

    /// <summary>The pattern has unescaped wildcard characters; without them it names exactly one VM.</summary>
    public bool HasWildcards { get; }

    /// <summary>True if <paramref name="text"/> contains an unescaped <c>*</c>, <c>?</c> or <c>[</c>.</summary>
    public static bool ContainsWildcards(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] == '`')
                i++;
            else if (text[i] is '*' or '?' or '[')
                return true;
        }
        return false;
    }

    /// <summary>The pattern with escapes removed (the literal name a wildcard-free pattern stands for).</summary>
    public static string Unescape(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var builder = new System.Text.StringBuilder(text.Length);
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] == '`' && i + 1 < text.Length)
                i++;
            builder.Append(text[i]);
        }
        return builder.ToString();
    }

    public bool IsMatch(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Match(name, 0, 0);
    }

    public override string ToString() => Text;

    private bool Match(string name, int position, int element)
    {
        while (element < _elements.Length)
        {
            var current = _elements[element];
            switch (current.Kind)
            {
                case ElementKind.AnySequence:
                    // Collapse runs of '*'; then try every split point.
                    while (element + 1 < _elements.Length && _elements[element + 1].Kind == ElementKind.AnySequence)
                        element++;
                    if (element + 1 == _elements.Length)
                        return true;
                    for (var start = position; start <= name.Length; start++)
                        if (Match(name, start, element + 1))
                            return true;
                    return false;
                case ElementKind.AnyCharacter:
                    if (position >= name.Length)
                        return false;
                    break;
                case ElementKind.Literal:
                    if (position >= name.Length || char.ToUpperInvariant(name[position]) != char.ToUpperInvariant(current.Literal))
                        return false;
                    break;
                case ElementKind.Set:
                    if (position >= name.Length || !current.SetMatches(name[position]))
                        return false;
                    break;
            }
            position++;
            element++;
        }
        return position == name.Length;
    }

    private static Element[] Compile(string pattern, out bool hasWildcards)
    {
        hasWildcards = false;
        var elements = new List<Element>();
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            switch (c)
            {
                case '`' when i + 1 < pattern.Length:
                    elements.Add(Element.Char(pattern[++i]));
                    break;
                case '*':
                    hasWildcards = true;
                    elements.Add(new Element(ElementKind.AnySequence));
                    break;
                case '?':
                    hasWildcards = true;
                    elements.Add(new Element(ElementKind.AnyCharacter));
                    break;
                case '[':
                {
                    var close = FindClose(pattern, i + 1);
                    if (close < 0)
                        throw new ArgumentException($"The wildcard pattern '{pattern}' has a '[' without a matching ']'.", nameof(pattern));
                    hasWildcards = true;
                    elements.Add(Element.CharacterSet(ParseSet(pattern, i + 1, close)));
                    i = close;
                    break;
                }
                default:
                    elements.Add(Element.Char(c));
                    break;
            }
        }
        return elements.ToArray();
    }

    private static int FindClose(string pattern, int from)
    {
        for (var i = from; i < pattern.Length; i++)
        {
            if (pattern[i] == '`')
                i++;
            else if (pattern[i] == ']' && i > from)
                return i;
        }
        return -1;
    }

    private static List<(char From, char To)> ParseSet(string pattern, int start, int end)
    {
        var ranges = new List<(char, char)>();
        for (var i = start; i < end; i++)
        {
            var c = pattern[i];
            if (c == '`' && i + 1 < end)
                c = pattern[++i];
            if (i + 2 < end && pattern[i + 1] == '-')
            {
                var to = pattern[i + 2];
                if (to == '`' && i + 3 < end)
                {
                    to = pattern[i + 3];
                    i++;
                }
                ranges.Add((c, to));
                i += 2;
            }
            else
                ranges.Add((c, c));
        }
        return ranges;
    }

    private enum ElementKind { Literal, AnyCharacter, AnySequence, Set }

    private readonly record struct Element(ElementKind Kind, char Literal = '\0', List<(char From, char To)>? Ranges = null)
    {
        public static Element Char(char c) => new(ElementKind.Literal, c);
        public static Element CharacterSet(List<(char From, char To)> ranges) => new(ElementKind.Set, Ranges: ranges);

        public bool SetMatches(char c)
        {
            var lower = char.ToLowerInvariant(c);
            var upper = char.ToUpperInvariant(c);
            foreach (var (from, to) in Ranges!)
                if ((lower >= from && lower <= to) || (upper >= from && upper <= to))
                    return true;
            return false;
        }
    }
}
