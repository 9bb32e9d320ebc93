using System.Text;
using System.Text.RegularExpressions;

namespace KvmPS.HelpGen;

/// <summary>Reads a platyPS (schema 2.0.0) cmdlet page. Errors name the file and line.</summary>
public static partial class MarkdownReader
{
    [GeneratedRegex(@"^\[(?<text>[^\]]+)\]\((?<uri>[^)]*)\)\s*$")]
    private static partial Regex LinkPattern();

    public static CommandHelp ReadFile(string path) => Parse(File.ReadAllText(path), path);

    public static CommandHelp Parse(string text, string fileName = "<text>")
    {
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        var help = new CommandHelp();
        var i = 0;
        if (lines.Length > 0 && lines[0].Trim() == "---")
        {
            for (i = 1; i < lines.Length && lines[i].Trim() != "---"; i++)
            {
                var colon = lines[i].IndexOf(':');
                if (colon > 0)
                    help.Metadata[lines[i][..colon].Trim()] = lines[i][(colon + 1)..].Trim();
            }
            if (i >= lines.Length)
                throw new FormatException($"{fileName}: the YAML front matter is not closed with '---'");
            i++;
        }

        // Split into ## sections; the # heading names the command.
        var sections = new List<(string Title, int Line, List<string> Body)>();
        for (; i < lines.Length; i++)
        {
            var line = lines[i];
            if (IsFence(line))
            {
                // Copy fenced blocks verbatim (a '#' inside code is not a heading).
                var body = sections.Count > 0 ? sections[^1].Body : new List<string>();
                body.Add(line);
                for (i++; i < lines.Length && !IsFence(lines[i]); i++)
                    body.Add(lines[i]);
                if (i >= lines.Length)
                    throw new FormatException($"{fileName}: unclosed code fence");
                body.Add(lines[i]);
                continue;
            }
            if (line.StartsWith("# ", StringComparison.Ordinal))
                help.Name = line[2..].Trim();
            else if (line.StartsWith("## ", StringComparison.Ordinal))
                sections.Add((line[3..].Trim(), i + 1, new List<string>()));
            else if (sections.Count > 0)
                sections[^1].Body.Add(line);
        }
        if (help.Name.Length == 0)
            throw new FormatException($"{fileName}: no '# Command-Name' heading");

        foreach (var (title, line, body) in sections)
        {
            switch (title.ToUpperInvariant())
            {
                case "SYNOPSIS": help.Synopsis = Paragraphs(body); break;
                case "SYNTAX": ReadSyntax(help, body, fileName, line); break;
                case "DESCRIPTION": help.Description = Paragraphs(body); break;
                case "EXAMPLES": ReadExamples(help, body); break;
                case "PARAMETERS": ReadParameters(help, body, fileName, line); break;
                case "INPUTS": help.Inputs.AddRange(ReadTypes(body)); break;
                case "OUTPUTS": help.Outputs.AddRange(ReadTypes(body)); break;
                case "NOTES": help.Notes = Paragraphs(body); break;
                case "RELATED LINKS":
                    foreach (var l in body.Select(b => b.Trim()).Where(b => b.Length > 0))
                    {
                        var match = LinkPattern().Match(l);
                        help.RelatedLinks.Add(match.Success ? new LinkHelp(match.Groups["text"].Value, match.Groups["uri"].Value) : new LinkHelp(l, ""));
                    }
                    break;
                default:
                    throw new FormatException($"{fileName}:{line}: unknown section '## {title}'");
            }
        }
        return help;
    }

    private static bool IsFence(string line) => line.TrimStart().StartsWith("```", StringComparison.Ordinal);

    /// <summary>Splits a section body into ### subsections (heading, body lines), with any text before the first.</summary>
    private static List<(string Heading, List<string> Body)> Subsections(List<string> body)
    {
        var result = new List<(string, List<string>)> { ("", new List<string>()) };
        var inFence = false;
        foreach (var line in body)
        {
            if (IsFence(line))
                inFence = !inFence;
            if (!inFence && line.StartsWith("### ", StringComparison.Ordinal))
                result.Add((line[4..].Trim(), new List<string>()));
            else
                result[^1].Item2.Add(line);
        }
        return result;
    }

    /// <summary>Fenced blocks in <paramref name="body"/> (info string, content) and the text outside them.</summary>
    private static (List<(string Info, string Code)> Blocks, List<string> Text) Fences(List<string> body)
    {
        var blocks = new List<(string, string)>();
        var text = new List<string>();
        for (var i = 0; i < body.Count; i++)
        {
            if (!IsFence(body[i]))
            {
                text.Add(body[i]);
                continue;
            }
            var info = body[i].Trim()[3..].Trim();
            var code = new StringBuilder();
            for (i++; i < body.Count && !IsFence(body[i]); i++)
                code.Append(body[i]).Append('\n');
            blocks.Add((info, code.ToString().TrimEnd('\n')));
        }
        return (blocks, text);
    }

    /// <summary>Text with paragraphs separated by one blank line, trimmed.</summary>
    internal static string Paragraphs(IEnumerable<string> lines)
    {
        var paragraphs = new List<string>();
        var current = new List<string>();
        foreach (var line in lines)
        {
            if (line.Trim().Length == 0)
            {
                if (current.Count > 0)
                    paragraphs.Add(string.Join("\n", current));
                current.Clear();
            }
            else
                current.Add(line.TrimEnd());
        }
        if (current.Count > 0)
            paragraphs.Add(string.Join("\n", current));
        return string.Join("\n\n", paragraphs);
    }

    private static void ReadSyntax(CommandHelp help, List<string> body, string fileName, int line)
    {
        foreach (var (heading, sub) in Subsections(body))
        {
            foreach (var (_, code) in Fences(sub).Blocks)
            {
                var isDefault = heading.EndsWith("(Default)", StringComparison.Ordinal);
                var set = heading.Length == 0 ? null : heading.Replace("(Default)", "", StringComparison.Ordinal).Trim();
                help.Syntax.Add(new SyntaxBlock(set, isDefault, code.Trim()));
            }
        }
        if (help.Syntax.Count == 0)
            throw new FormatException($"{fileName}:{line}: SYNTAX has no code block");
    }

    private static void ReadExamples(CommandHelp help, List<string> body)
    {
        foreach (var (heading, sub) in Subsections(body).Skip(1))
        {
            var (blocks, text) = Fences(sub);
            help.Examples.Add(new ExampleHelp
            {
                Title = heading,
                Code = string.Join("\n\n", blocks.Select(b => b.Code)),
                Remarks = Paragraphs(text),
            });
        }
    }

    private static void ReadParameters(CommandHelp help, List<string> body, string fileName, int line)
    {
        foreach (var (heading, sub) in Subsections(body).Skip(1))
        {
            if (heading.Equals("CommonParameters", StringComparison.OrdinalIgnoreCase))
            {
                help.CommonParameters = true;
                continue;
            }
            if (!heading.StartsWith('-'))
                throw new FormatException($"{fileName}:{line}: parameter heading '### {heading}' must start with '-'");
            var (blocks, text) = Fences(sub);
            var yaml = blocks.FirstOrDefault(b => b.Info.Equals("yaml", StringComparison.OrdinalIgnoreCase));
            if (yaml.Code is null)
                throw new FormatException($"{fileName}: parameter -{heading[1..]} has no ```yaml block");
            var parameter = new ParameterHelp { Name = heading[1..], Description = Paragraphs(text) };
            foreach (var entry in yaml.Code.Split('\n'))
            {
                var colon = entry.IndexOf(':');
                if (colon <= 0)
                    continue;
                var key = entry[..colon].Trim();
                var value = entry[(colon + 1)..].Trim();
                switch (key.ToLowerInvariant())
                {
                    case "type": parameter.Type = value; break;
                    case "parameter sets": parameter.ParameterSets.AddRange(value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)); break;
                    case "aliases": parameter.Aliases = value; break;
                    case "required": parameter.Required = value.StartsWith("True", StringComparison.OrdinalIgnoreCase); break;
                    case "position": parameter.Position = value; break;
                    case "default value": parameter.DefaultValue = value; break;
                    case "accept pipeline input": parameter.PipelineInput = value; break;
                    case "accept wildcard characters": parameter.Globbing = value.Equals("True", StringComparison.OrdinalIgnoreCase); break;
                }
            }
            help.Parameters.Add(parameter);
        }
    }

    private static IEnumerable<TypeHelp> ReadTypes(List<string> body)
    {
        foreach (var (heading, sub) in Subsections(body).Skip(1))
            yield return new TypeHelp(heading, Paragraphs(sub));
    }
}
