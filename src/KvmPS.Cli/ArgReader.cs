namespace KvmPS.Cli;

internal sealed record ParsedArgs(IReadOnlyList<string> Positional, IReadOnlySet<string> Flags, bool Help, IReadOnlyDictionary<string, string>? Values = null)
{
    public static ParsedArgs Empty { get; } = new(Array.Empty<string>(), new HashSet<string>(), false);
    public bool Has(string flag) => Flags.Contains(flag);

    /// <summary>The value given to an option that takes one (<c>--size 1G</c> or <c>--size=1G</c>); null when absent.</summary>
    public string? Value(string option) => Values is not null && Values.TryGetValue(option, out var value) ? value : null;

    /// <summary>
    /// The positional arguments, <paramref name="minimum"/> to <paramref name="maximum"/> of them; --help shows
    /// <paramref name="topic"/>, and another count is a usage error quoting <paramref name="usage"/>.
    /// </summary>
    public IReadOnlyList<string> Positionals(string topic, string usage, int minimum, int maximum)
    {
        if (Help)
            throw new CliApp.HelpRequested(topic);
        if (Positional.Count < minimum || Positional.Count > maximum)
            throw new UsageException($"{topic}: usage: kvmps {usage}");
        return Positional;
    }
}

/// <summary>Arguments after the verb: known --flags anywhere, the rest positional; "--" ends the flags.</summary>
internal sealed class ArgReader(string[] args)
{
    private int _index;

    public string? Next() => _index < args.Length ? args[_index++] : null;

    public ParsedArgs Parse(params string[] allowedFlags) => Parse(allowedFlags, []);

    /// <summary>As <see cref="Parse(string[])"/>, with options that take a value (<paramref name="valueOptions"/>: <c>--size 1G</c>, <c>--size=1G</c>).</summary>
    public ParsedArgs Parse(string[] allowedFlags, string[] valueOptions)
    {
        var positional = new List<string>();
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var flags = new HashSet<string>(StringComparer.Ordinal);
        var help = false;
        var onlyPositional = false;
        while (Next() is { } arg)
        {
            if (!onlyPositional && arg == "--")
                onlyPositional = true;
            else if (!onlyPositional && arg is "-h" or "--help")
                help = true;
            else if (!onlyPositional && arg.StartsWith("--", StringComparison.Ordinal) && valueOptions.Contains(arg.Split('=', 2)[0], StringComparer.Ordinal))
            {
                var option = arg.Split('=', 2);
                var value = option.Length == 2 ? option[1] : Next() ?? throw new UsageException($"option '{arg}' needs a value");
                if (!values.TryAdd(option[0], value))
                    throw new UsageException($"option '{option[0]}' is given twice");
            }
            else if (!onlyPositional && arg.StartsWith('-') && arg.Length > 1)
            {
                var flag = arg == "-n" ? "--what-if" : arg;
                if (!allowedFlags.Contains(flag, StringComparer.Ordinal))
                    throw new UsageException($"unknown option '{arg}'" + (allowedFlags.Length + valueOptions.Length > 0 ? $" (this command takes: {string.Join(", ", allowedFlags.Concat(valueOptions))})" : ""));
                flags.Add(flag);
            }
            else
                positional.Add(arg);
        }
        return new ParsedArgs(positional, flags, help, values);
    }
}
