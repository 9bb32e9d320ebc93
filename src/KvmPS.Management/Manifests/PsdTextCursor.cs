namespace KvmPS.Management.Manifests;

/// <summary>
/// Walks the source text keeping a 1-based line/column. <c>\r\n</c>, <c>\n</c> and a lone <c>\r</c>
/// each end a line, as in the PowerShell tokenizer.
/// </summary>
internal sealed class PsdTextCursor
{
    private readonly string _text;
    private int _index;
    private int _line = 1;
    private int _column = 1;

    public PsdTextCursor(string text, string file)
    {
        _text = text;
        File = file;
        // A byte-order mark is not part of the text and must not shift column numbers.
        if (_text.Length > 0 && _text[0] == '\uFEFF')
            _index = 1;
    }

    public string File { get; }
    public bool AtEnd => _index >= _text.Length;
    public char Current => _index < _text.Length ? _text[_index] : '\0';
    public int Index => _index;
    public SourcePosition Position => new(File, _line, _column);

    public char Peek(int offset = 1)
    {
        var i = _index + offset;
        return i < _text.Length ? _text[i] : '\0';
    }

    public string Slice(int start, int end) => _text.Substring(start, end - start);

    public void Advance()
    {
        if (_index >= _text.Length)
            return;
        var c = _text[_index++];
        if (c == '\n' || (c == '\r' && Current != '\n'))
        {
            _line++;
            _column = 1;
        }
        else
        {
            _column++;
        }
    }

    public void Advance(int count)
    {
        for (var i = 0; i < count; i++)
            Advance();
    }

    /// <summary>Snapshot for backtracking over a lookahead.</summary>
    public (int Index, int Line, int Column) Mark() => (_index, _line, _column);

    public void Reset((int Index, int Line, int Column) mark) => (_index, _line, _column) = mark;

    public bool IsAtNewline => Current is '\n' or '\r';

    /// <summary>Consumes one line break (<c>\r\n</c> counts as one).</summary>
    public void AdvanceNewline()
    {
        if (Current == '\r' && Peek() == '\n')
            Advance();
        Advance();
    }

    public ManifestParseException Error(string reason) => new(Position, reason);
    public ManifestParseException Error(SourcePosition position, string reason) => new(position, reason);
}
