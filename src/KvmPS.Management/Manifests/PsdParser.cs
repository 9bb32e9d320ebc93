using System.Globalization;

namespace KvmPS.Management.Manifests;

/// <summary>
/// Recursive-descent reader for the PowerShell data-file language (what <c>Import-PowerShellDataFile</c>
/// accepts). It never evaluates anything: every construct that would run code — commands, variables other
/// than <c>$true/$false/$null</c>, operators, member access, script blocks, subexpressions — is rejected
/// with its position. Scannerless because PowerShell tokenization is context-dependent (keys vs values).
/// </summary>
internal sealed class PsdParser
{
    private static readonly HashSet<string> Keywords = new(StringComparer.OrdinalIgnoreCase)
    {
        "begin", "break", "catch", "class", "configuration", "continue", "data", "do", "dynamicparam", "else",
        "elseif", "end", "enum", "exit", "filter", "finally", "for", "foreach", "function", "hidden", "if", "in",
        "inlinescript", "parallel", "param", "process", "return", "sequence", "static", "switch", "throw",
        "trap", "try", "until", "using", "while", "workflow",
    };

    private readonly PsdTextCursor _cursor;
    private readonly string _text;
    private int _depth; // open containers ('@{', '@(', '(', unary ',', casts) around the current position

    public PsdParser(string text, string file)
    {
        _text = text;
        _cursor = new PsdTextCursor(text, file);
    }

    /// <summary>A whole data file: exactly one hashtable, surrounded only by blanks and comments.</summary>
    public PsdHashtable ParseDataFile()
    {
        SkipTrivia(newlines: true);
        if (_cursor.AtEnd)
            throw _cursor.Error("The data file is empty; it must contain a single hashtable '@{ ... }'");
        var value = ParseExpression();
        if (value is not PsdHashtable table)
            throw _cursor.Error(value.Position, $"A data file must contain a single hashtable '@{{ ... }}', not {Article(value.KindName)}");
        SkipTrivia(newlines: true);
        if (!_cursor.AtEnd)
            throw UnexpectedAfterValue("the end of the file after the data file's hashtable");
        return table;
    }

    /// <summary>A single value expression filling the whole text (used for tests and one-off values).</summary>
    public PsdValue ParseStandaloneValue()
    {
        SkipTrivia(newlines: true);
        if (_cursor.AtEnd)
            throw _cursor.Error("Expected a value");
        var value = ParseExpression();
        SkipTrivia(newlines: true);
        if (!_cursor.AtEnd)
            throw UnexpectedAfterValue("the end of the text");
        return value;
    }

    // expression := unary (',' unary)*   — a bare comma list becomes an array.
    private PsdValue ParseExpression()
    {
        var first = ParseUnary();
        SkipTrivia(newlines: false);
        if (_cursor.Current != ',')
            return first;
        var items = new List<PsdValue> { first };
        while (_cursor.Current == ',')
        {
            _cursor.Advance();
            SkipTrivia(newlines: true);
            if (IsValueTerminator(_cursor.Current))
                throw _cursor.Error("Missing expression after ',' in an array");
            items.Add(ParseUnary());
            SkipTrivia(newlines: false);
        }
        return new PsdArray(items, first.Position);
    }

    // unary := ',' unary | '[' type ']' unary | primary
    private PsdValue ParseUnary()
    {
        var position = _cursor.Position;
        if (_cursor.Current == ',')
        {
            _cursor.Advance();
            SkipTrivia(newlines: true);
            if (IsValueTerminator(_cursor.Current))
                throw _cursor.Error("Missing expression after unary ','");
            Nest(position);
            var item = ParseUnary();
            Unnest();
            return new PsdArray(new[] { item }, position);
        }
        if (_cursor.Current == '[')
            return ParseCast();
        var value = ParsePrimary();
        RejectPostfix();
        return value;
    }

    private PsdValue ParsePrimary()
    {
        var position = _cursor.Position;
        var c = _cursor.Current;
        if (c == '@')
        {
            var next = _cursor.Peek();
            if (next == '{')
                return ParseHashtable();
            if (next == '(')
                return ParseArrayExpression();
            if (PsdCharacters.IsSingleQuote(next) || PsdCharacters.IsDoubleQuote(next))
                return new PsdString(PsdStringScanner.ScanHereString(_cursor), position);
            throw _cursor.Error("'@' may only start '@{', '@(' or a here-string; splatting is not allowed in a data file");
        }
        if (c == '(')
            return ParseParenthesized();
        if (PsdCharacters.IsSingleQuote(c))
            return new PsdString(PsdStringScanner.ScanSingleQuoted(_cursor), position);
        if (PsdCharacters.IsDoubleQuote(c))
            return new PsdString(PsdStringScanner.ScanDoubleQuoted(_cursor), position);
        if (c == '$')
            return ParseVariable();
        if (c == '{')
            throw _cursor.Error("Script blocks '{ ... }' are not allowed in a data file");
        if (PsdNumberScanner.StartsNumber(_text, _cursor.Index))
            return ParseNumber();
        if (IsValueTerminator(c))
            throw _cursor.Error(_cursor.AtEnd ? "Expected a value but reached the end of the file" : $"Expected a value before {Describe(c)}");
        if (PsdCharacters.IsOperatorStart(c) || c == '.' && _cursor.Peek() == '.')
            throw OperatorError();
        if (c == '`')
            throw _cursor.Error("Unexpected '`' (a backtick only escapes characters inside double-quoted strings or continues a line)");
        if (c == ']')
            throw _cursor.Error("Unexpected ']'");

        var word = ReadBareWord();
        if (Keywords.Contains(word))
            throw _cursor.Error(position, $"Statements ('{word}') are not allowed in a data file");
        if (word.Equals("true", StringComparison.OrdinalIgnoreCase) || word.Equals("false", StringComparison.OrdinalIgnoreCase)
            || word.Equals("null", StringComparison.OrdinalIgnoreCase))
            throw _cursor.Error(position, $"Commands are not allowed in a data file: '{word}' (did you mean ${word.ToLowerInvariant()}?)");
        throw _cursor.Error(position, $"Commands are not allowed in a data file: '{word}'");
    }

    private PsdValue ParseNumber()
    {
        var position = _cursor.Position;
        var outcome = PsdNumberScanner.Scan(_text, _cursor.Index, out var end, out var value, out var error);
        if (outcome != PsdNumberScanner.Outcome.Number)
            throw _cursor.Error(position, error!.StartsWith('\'') && error.Contains("is not a valid number")
                ? error + " (commands are not allowed in a data file)"
                : error);
        _cursor.Advance(end - _cursor.Index);
        return new PsdNumber(value!, position);
    }

    private PsdValue ParseVariable()
    {
        var position = _cursor.Position;
        var next = _cursor.Peek();
        if (next == '(')
            throw _cursor.Error("Subexpressions '$(...)' are not allowed in a data file");
        string name;
        if (next == '{')
        {
            var i = 2;
            while (_cursor.Peek(i) is not '\0' and not '}' && !PsdCharacters.IsNewline(_cursor.Peek(i)))
                i++;
            // "${name}" with its brace; an unclosed one ends at the newline or the end of the text (found by fuzzing).
            name = "$" + _text.Substring(_cursor.Index + 1, _cursor.Peek(i) == '}' ? i : i - 1);
            throw _cursor.Error($"Variables are not allowed in a data file (only $true, $false and $null): '{name}'");
        }
        if (next is '$' or '^' or '?')
            throw _cursor.Error($"Variables are not allowed in a data file (only $true, $false and $null): '${next}'");
        var length = 1;
        while (PsdCharacters.IsVariableChar(_cursor.Peek(length)))
            length++;
        name = _text.Substring(_cursor.Index + 1, length - 1);
        if (name.Length == 0)
            throw _cursor.Error("A '$' must be followed by a variable name, and only $true, $false and $null are allowed in a data file");
        PsdValue? value = name.ToLowerInvariant() switch
        {
            "true" => new PsdBoolean(true, position),
            "false" => new PsdBoolean(false, position),
            "null" => new PsdNull(position),
            _ => null,
        };
        if (value is null)
            throw _cursor.Error($"Variables are not allowed in a data file (only $true, $false and $null): '${name}'");
        _cursor.Advance(length);
        return value;
    }

    private PsdValue ParseCast()
    {
        var position = _cursor.Position;
        var depth = 0;
        var i = 0;
        while (true)
        {
            var c = _cursor.Peek(i);
            if (c == '\0' || PsdCharacters.IsNewline(c))
                throw _cursor.Error("Missing closing ']' in a type name");
            if (c == '[') depth++;
            else if (c == ']' && --depth == 0) break;
            i++;
        }
        var typeName = _text.Substring(_cursor.Index + 1, i - 1).Trim();
        _cursor.Advance(i + 1);
        if (typeName.Length == 0)
            throw _cursor.Error(position, "Missing type name between '[' and ']'");
        if (_cursor.Current == ':' && _cursor.Peek() == ':')
            throw _cursor.Error($"Static member access '[{typeName}]::' is not allowed in a data file");
        if (typeName.Equals("ordered", StringComparison.OrdinalIgnoreCase))
            throw _cursor.Error(position, "[ordered] is not allowed in a data file (hashtables keep their order anyway)");
        if (!PsdCast.IsAllowedType(typeName))
            throw _cursor.Error(position, $"Type '[{typeName}]' is not allowed in a data file; only primitive casts are: {PsdCast.AllowedTypeList}");
        SkipTrivia(newlines: false);
        if (IsValueTerminator(_cursor.Current))
            throw _cursor.Error(position, $"A cast '[{typeName}]' must be followed by a value; type literals are not allowed in a data file");
        Nest(position);
        var operand = ParseUnary();
        Unnest();
        return PsdCast.Apply(typeName, operand, position);
    }

    private PsdHashtable ParseHashtable()
    {
        var open = _cursor.Position;
        Nest(open);
        _cursor.Advance(2);
        var table = new PsdHashtable(open);
        SkipSeparators();
        while (true)
        {
            if (_cursor.Current == '}')
            {
                _cursor.Advance();
                Unnest();
                return table;
            }
            if (_cursor.AtEnd)
                throw _cursor.Error($"Missing closing '}}' for the hashtable that starts at {open.Line}:{open.Column}");

            var keyPosition = _cursor.Position;
            var key = ParseKey();
            SkipTrivia(newlines: false);
            if (_cursor.Current != '=')
                throw _cursor.Error($"Missing '=' after hashtable key '{key}'");
            _cursor.Advance();
            SkipTrivia(newlines: true);
            if (_cursor.AtEnd || _cursor.Current is '}' or ';' or ')')
                throw _cursor.Error($"Missing value after '=' for hashtable key '{key}'");
            var value = ParseExpression();
            var existing = table.TryAdd(new PsdHashtableEntry(key, keyPosition, value));
            if (existing is not null)
                throw _cursor.Error(keyPosition,
                    $"Duplicate key '{key}' in hashtable (keys are case-insensitive; first defined at {existing.KeyPosition.Line}:{existing.KeyPosition.Column})");

            SkipTrivia(newlines: false);
            if (_cursor.Current == '}')
                continue;
            if (_cursor.Current == ';' || _cursor.IsAtNewline)
            {
                SkipSeparators();
                continue;
            }
            if (_cursor.AtEnd)
                throw _cursor.Error($"Missing closing '}}' for the hashtable that starts at {open.Line}:{open.Column}");
            throw UnexpectedAfterValue("';', a line break or '}' after a hashtable value");
        }
    }

    private string ParseKey()
    {
        var position = _cursor.Position;
        var c = _cursor.Current;
        if (PsdCharacters.IsSingleQuote(c))
            return PsdStringScanner.ScanSingleQuoted(_cursor);
        if (PsdCharacters.IsDoubleQuote(c))
            return PsdStringScanner.ScanDoubleQuoted(_cursor);
        if (PsdNumberScanner.StartsNumber(_text, _cursor.Index)
            && PsdNumberScanner.Scan(_text, _cursor.Index, out var end, out var number, out _) == PsdNumberScanner.Outcome.Number)
        {
            _cursor.Advance(end - _cursor.Index);
            return Convert.ToString(number, CultureInfo.InvariantCulture)!;
        }
        if (PsdCharacters.EndsBareWord(c) || c is '$' or '@' or '[' or '`')
            throw _cursor.Error(position, $"Expected a hashtable key (a name, a quoted string or a number) but found {Describe(c)}");
        return ReadBareWord();
    }

    // '@(' statements ')' — each statement's value is enumerated into the result, as PowerShell does.
    private PsdArray ParseArrayExpression()
    {
        var open = _cursor.Position;
        Nest(open);
        _cursor.Advance(2);
        var items = new List<PsdValue>();
        SkipSeparators();
        while (true)
        {
            if (_cursor.Current == ')')
            {
                _cursor.Advance();
                Unnest();
                return new PsdArray(items, open);
            }
            if (_cursor.AtEnd)
                throw _cursor.Error($"Missing closing ')' for the array that starts at {open.Line}:{open.Column}");
            var value = ParseExpression();
            if (value is PsdArray array)
                items.AddRange(array.Items);
            else
                items.Add(value);
            SkipTrivia(newlines: false);
            if (_cursor.Current == ')')
                continue;
            if (_cursor.Current == ';' || _cursor.IsAtNewline)
            {
                SkipSeparators();
                continue;
            }
            if (_cursor.AtEnd)
                throw _cursor.Error($"Missing closing ')' for the array that starts at {open.Line}:{open.Column}");
            throw UnexpectedAfterValue("',', ';', a line break or ')' in an array");
        }
    }

    private PsdValue ParseParenthesized()
    {
        var open = _cursor.Position;
        Nest(open);
        _cursor.Advance();
        SkipTrivia(newlines: true);
        if (_cursor.Current == ')')
            throw _cursor.Error("Expected a value inside '( )'");
        var value = ParseExpression();
        SkipTrivia(newlines: true);
        if (_cursor.Current == ')')
        {
            _cursor.Advance();
            Unnest();
            return value;
        }
        if (_cursor.AtEnd)
            throw _cursor.Error($"Missing closing ')' for the '(' at {open.Line}:{open.Column}");
        throw UnexpectedAfterValue("')'");
    }

    /// <summary>
    /// Enters one nesting level at <paramref name="opener"/>. The parser recurses once per level, so without a limit a
    /// hostile or broken file (10,000 '@(') overflows the stack, which kills the process: no catch can stop that.
    /// </summary>
    private void Nest(SourcePosition opener)
    {
        if (++_depth > PsdReader.MaxNestingDepth)
            throw _cursor.Error(opener,
                $"Values are nested more than {PsdReader.MaxNestingDepth} levels deep ('@{{', '@(', '(', ',' and casts each open a level); a data file may nest at most {PsdReader.MaxNestingDepth}");
    }

    private void Unnest() => _depth--;

    /// <summary>Rejects member access, indexing and invocation glued to a value ('a'.Length, x[0], 'a'(1)).</summary>
    private void RejectPostfix()
    {
        var c = _cursor.Current;
        var next = _cursor.Peek();
        if (c == '.' && next != '.' && !char.IsAsciiDigit(next) && !PsdCharacters.IsBlank(next) && next != '\0' && !PsdCharacters.IsNewline(next))
            throw _cursor.Error("Member access and method calls are not allowed in a data file");
        if (c == ':' && next == ':')
            throw _cursor.Error("Static member access '::' is not allowed in a data file");
        if (c == '[')
            throw _cursor.Error("Indexing '[...]' is not allowed in a data file");
        if (c == '(')
            throw _cursor.Error("Invocations '(...)' are not allowed in a data file");
    }

    private ManifestParseException UnexpectedAfterValue(string expected)
    {
        var c = _cursor.Current;
        if (PsdCharacters.IsOperatorStart(c) || c == '.' && _cursor.Peek() == '.')
            return OperatorError();
        if (c == '{')
            return _cursor.Error("Script blocks '{ ... }' are not allowed in a data file");
        if (c == '.' || c == '[' || c == '(' || c == ':' && _cursor.Peek() == ':')
        {
            RejectPostfix();
        }
        var token = PsdCharacters.EndsBareWord(c) || c is '$' or '@' or '[' or ']' ? c.ToString() : PeekBareWord();
        return _cursor.Error($"Unexpected token '{token}'; expected {expected}");
    }

    private ManifestParseException OperatorError()
    {
        var c = _cursor.Current;
        string op;
        if (c == '-' && char.IsLetter(_cursor.Peek()))
        {
            var length = 1;
            while (char.IsLetter(_cursor.Peek(length)))
                length++;
            op = _text.Substring(_cursor.Index, length);
        }
        else
        {
            var length = 1;
            while (length < 3 && (PsdCharacters.IsOperatorStart(_cursor.Peek(length)) || _cursor.Peek(length) == '.' && c == '.'))
                length++;
            op = _text.Substring(_cursor.Index, length);
        }
        return _cursor.Error($"Operator '{op}' is not allowed in a data file (expressions are not evaluated)");
    }

    private string ReadBareWord()
    {
        var start = _cursor.Index;
        while (!PsdCharacters.EndsBareWord(_cursor.Current))
            _cursor.Advance();
        return _cursor.Slice(start, _cursor.Index);
    }

    private string PeekBareWord()
    {
        var length = 0;
        while (!PsdCharacters.EndsBareWord(_cursor.Peek(length)))
            length++;
        return length == 0 ? _cursor.Current.ToString() : _text.Substring(_cursor.Index, length);
    }

    /// <summary>Blanks, comments and line continuations; line breaks too when <paramref name="newlines"/>.</summary>
    private void SkipTrivia(bool newlines)
    {
        while (true)
        {
            var c = _cursor.Current;
            if (PsdCharacters.IsBlank(c) || newlines && _cursor.IsAtNewline)
            {
                _cursor.Advance();
            }
            else if (c == '#')
            {
                while (!_cursor.AtEnd && !_cursor.IsAtNewline)
                    _cursor.Advance();
            }
            else if (c == '<' && _cursor.Peek() == '#')
            {
                var open = _cursor.Position;
                _cursor.Advance(2);
                while (!(_cursor.Current == '#' && _cursor.Peek() == '>'))
                {
                    if (_cursor.AtEnd)
                        throw _cursor.Error(open, "Missing the end of the block comment '#>'");
                    _cursor.Advance();
                }
                _cursor.Advance(2);
            }
            else if (c == '`' && PsdCharacters.IsNewline(_cursor.Peek()))
            {
                _cursor.Advance();
                _cursor.AdvanceNewline();
            }
            else
            {
                return;
            }
        }
    }

    /// <summary>Trivia plus statement separators (line breaks and ';') between hashtable entries / array statements.</summary>
    private void SkipSeparators()
    {
        while (true)
        {
            SkipTrivia(newlines: true);
            if (_cursor.Current != ';')
                return;
            _cursor.Advance();
        }
    }

    private bool IsValueTerminator(char c) =>
        _cursor.AtEnd || PsdCharacters.IsNewline(c) || c is ';' or ')' or '}' or ',';

    private string Describe(char c) => c switch
    {
        '\0' when _cursor.AtEnd => "the end of the file",
        '\n' or '\r' => "the end of the line",
        _ => $"'{c}'",
    };

    private static string Article(string kind) => kind is "array" ? "an array" : $"a {kind}";
}
