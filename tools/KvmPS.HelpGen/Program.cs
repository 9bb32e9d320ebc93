using System.Reflection;
using KvmPS.HelpGen;

// kvmps-helpgen maml --docs DIR --output FILE [--module NAME]
//     every <Verb-Noun>.md in DIR (about_*.md excluded) → one MAML file
// kvmps-helpgen markdown --assembly KvmPS.dll --docs DIR
//     creates missing pages and refreshes SYNTAX/PARAMETERS/INPUTS/OUTPUTS of existing ones (like platyPS Update-MarkdownHelp)
try
{
    if (args.Length == 0)
        return Usage();
    var options = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
    for (var i = 1; i < args.Length; i++)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            return Usage($"unexpected argument '{args[i]}'");
        options[args[i][2..]] = args[++i];
    }
    switch (args[0])
    {
        case "maml":
        {
            var docs = Required(options, "docs");
            var output = Required(options, "output");
            var pages = HelpPages.CommandPages(docs).Select(MarkdownReader.ReadFile).ToList();
            if (pages.Count == 0)
                Console.Error.WriteLine($"helpgen: warning: no command pages in '{docs}'");
            var xml = MamlWriter.Write(pages);
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
            File.WriteAllText(output, xml);
            Console.WriteLine($"helpgen: {pages.Count} commands → {output}");
            // about_*.md → about_*.help.txt next to the MAML file (Get-Help about_KvmPS reads those).
            foreach (var about in Directory.EnumerateFiles(docs, "about_*.md"))
            {
                var target = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(output))!, Path.GetFileNameWithoutExtension(about) + ".help.txt");
                File.WriteAllText(target, HelpPages.AboutText(File.ReadAllText(about)));
            }
            return 0;
        }
        case "markdown":
        {
            var docs = Required(options, "docs");
            var assembly = Assembly.LoadFrom(Path.GetFullPath(Required(options, "assembly")));
            Directory.CreateDirectory(docs);
            foreach (var type in CmdletReflector.CmdletTypes(assembly).OrderBy(CmdletReflector.CommandName))
            {
                var path = Path.Combine(docs, CmdletReflector.CommandName(type) + ".md");
                var existing = File.Exists(path) ? MarkdownReader.ReadFile(path) : null;
                File.WriteAllText(path, MarkdownWriter.Write(CmdletReflector.Describe(type, existing)));
                Console.WriteLine((existing is null ? "created " : "updated ") + path);
            }
            return 0;
        }
        default:
            return Usage($"unknown mode '{args[0]}'");
    }
}
catch (Exception e) when (e is FormatException or IOException or UnauthorizedAccessException or ArgumentException)
{
    Console.Error.WriteLine("helpgen: error: " + e.Message);
    return 1;
}

static string Required(Dictionary<string, string> options, string name) =>
    options.TryGetValue(name, out var value) ? value : throw new ArgumentException($"--{name} is required");

static int Usage(string? error = null)
{
    if (error is not null)
        Console.Error.WriteLine("helpgen: error: " + error);
    Console.Error.WriteLine("usage: KvmPS.HelpGen maml --docs DIR --output FILE | markdown --assembly KvmPS.dll --docs DIR");
    return 2;
}

namespace KvmPS.HelpGen
{
    public static class HelpPages
    {
        /// <summary>The cmdlet pages of a docs folder: Verb-Noun.md (about topics are not command help).</summary>
        public static IEnumerable<string> CommandPages(string docs) =>
            Directory.EnumerateFiles(docs, "*.md")
                .Where(p => !Path.GetFileName(p).StartsWith("about_", StringComparison.OrdinalIgnoreCase) && Path.GetFileName(p).Contains('-'))
                .Order(StringComparer.Ordinal);

        /// <summary>An about topic as the plain text Get-Help shows: headings upper-cased, code fences dropped, code indented.</summary>
        public static string AboutText(string markdown)
        {
            var builder = new System.Text.StringBuilder();
            var inCode = false;
            foreach (var raw in markdown.Replace("\r\n", "\n").Split('\n'))
            {
                if (raw.TrimStart().StartsWith("```", StringComparison.Ordinal))
                {
                    inCode = !inCode;
                    continue;
                }
                if (inCode)
                    builder.Append("    ").Append(raw).Append('\n');
                else if (raw.StartsWith("#", StringComparison.Ordinal))
                {
                    var level = raw.TakeWhile(c => c == '#').Count();
                    var title = raw[level..].Trim();
                    builder.Append(level <= 2 ? title.ToUpperInvariant() : "  " + title).Append('\n');
                }
                else
                    builder.Append(raw.Length == 0 ? "" : "    " + InlineCode.Strip(raw)).Append('\n');
            }
            return builder.ToString();
        }
    }
}
