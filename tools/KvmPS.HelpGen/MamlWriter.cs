using System.Text;
using System.Xml;

namespace KvmPS.HelpGen;

/// <summary>Writes MAML command help (the format Get-Help reads from <c>&lt;module&gt;.dll-Help.xml</c>).</summary>
public static class MamlWriter
{
    private const string Msh = "http://msh";
    private const string Maml = "http://schemas.microsoft.com/maml/2004/10";
    private const string Command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
    private const string Dev = "http://schemas.microsoft.com/maml/dev/2004/10";
    private const string MsHelp = "http://msdn.microsoft.com/mshelp";

    public static string Write(IEnumerable<CommandHelp> commands)
    {
        var settings = new XmlWriterSettings { Indent = true, Encoding = new UTF8Encoding(false), OmitXmlDeclaration = false };
        var output = new StringBuilder();
        using (var stringWriter = new Utf8StringWriter(output))
        using (var w = XmlWriter.Create(stringWriter, settings))
        {
            w.WriteStartDocument();
            w.WriteStartElement("helpItems", Msh);
            w.WriteAttributeString("schema", "maml");
            foreach (var help in commands.OrderBy(c => c.Name, StringComparer.OrdinalIgnoreCase))
                WriteCommand(w, help);
            w.WriteEndElement();
            w.WriteEndDocument();
        }
        return output.ToString();
    }

    private static void WriteCommand(XmlWriter w, CommandHelp help)
    {
        w.WriteStartElement("command", "command", Command);
        w.WriteAttributeString("xmlns", "maml", null, Maml);
        w.WriteAttributeString("xmlns", "command", null, Command);
        w.WriteAttributeString("xmlns", "dev", null, Dev);
        w.WriteAttributeString("xmlns", "MSHelp", null, MsHelp);

        w.WriteStartElement("command", "details", Command);
        w.WriteElementString("command", "name", Command, help.Name);
        w.WriteElementString("command", "verb", Command, help.Verb);
        w.WriteElementString("command", "noun", Command, help.Noun);
        Description(w, help.Synopsis);
        w.WriteEndElement();

        Description(w, help.Description);

        w.WriteStartElement("command", "syntax", Command);
        var sets = help.Syntax.Count > 0 ? help.Syntax.Select(s => s.ParameterSetName).ToList() : new List<string?> { null };
        foreach (var set in sets)
        {
            w.WriteStartElement("command", "syntaxItem", Command);
            w.WriteElementString("maml", "name", Maml, help.Name);
            foreach (var parameter in OrderForSyntax(help.Parameters.Where(p => p.AppliesTo(set))))
                Parameter(w, parameter, inSyntax: true);
            w.WriteEndElement();
        }
        w.WriteEndElement();

        w.WriteStartElement("command", "parameters", Command);
        foreach (var parameter in help.Parameters)
            Parameter(w, parameter, inSyntax: false);
        w.WriteEndElement();

        Types(w, "inputTypes", "inputType", help.Inputs);
        Types(w, "returnValues", "returnValue", help.Outputs);

        w.WriteStartElement("maml", "alertSet", Maml);
        w.WriteStartElement("maml", "alert", Maml);
        Paras(w, help.Notes);
        w.WriteEndElement();
        w.WriteEndElement();

        w.WriteStartElement("command", "examples", Command);
        foreach (var example in help.Examples)
        {
            w.WriteStartElement("command", "example", Command);
            w.WriteElementString("maml", "title", Maml, $"-------------------------- {example.Title} --------------------------");
            w.WriteElementString("dev", "code", Dev, example.Code);
            w.WriteStartElement("dev", "remarks", Dev);
            Paras(w, example.Remarks);
            w.WriteEndElement();
            w.WriteEndElement();
        }
        w.WriteEndElement();

        w.WriteStartElement("command", "relatedLinks", Command);
        foreach (var link in help.RelatedLinks)
        {
            w.WriteStartElement("maml", "navigationLink", Maml);
            w.WriteElementString("maml", "linkText", Maml, link.Text);
            // Links to sibling pages (*.md) mean nothing to Get-Help; only real URIs are kept.
            w.WriteElementString("maml", "uri", Maml, link.Uri.EndsWith(".md", StringComparison.OrdinalIgnoreCase) ? "" : link.Uri);
            w.WriteEndElement();
        }
        w.WriteEndElement();

        w.WriteEndElement();
    }

    private static IEnumerable<ParameterHelp> OrderForSyntax(IEnumerable<ParameterHelp> parameters) =>
        parameters
            .Select((p, index) => (p, index, position: int.TryParse(p.Position, out var n) ? n : int.MaxValue))
            .OrderBy(x => x.position).ThenBy(x => x.p.Required ? 0 : 1).ThenBy(x => x.index)
            .Select(x => x.p);

    private static void Parameter(XmlWriter w, ParameterHelp p, bool inSyntax)
    {
        w.WriteStartElement("command", "parameter", Command);
        w.WriteAttributeString("required", p.Required ? "true" : "false");
        w.WriteAttributeString("variableLength", p.Type.EndsWith("[]", StringComparison.Ordinal) ? "true" : "false");
        w.WriteAttributeString("globbing", p.Globbing ? "true" : "false");
        w.WriteAttributeString("pipelineInput", p.PipelineInput);
        w.WriteAttributeString("position", p.Position.Equals("Named", StringComparison.OrdinalIgnoreCase) ? "named" : p.Position);
        w.WriteAttributeString("aliases", string.IsNullOrWhiteSpace(p.Aliases) ? "none" : p.Aliases);
        w.WriteElementString("maml", "name", Maml, p.Name);
        Description(w, p.Description);
        if (!(inSyntax && p.IsSwitch))
        {
            w.WriteStartElement("command", "parameterValue", Command);
            w.WriteAttributeString("required", p.IsSwitch ? "false" : "true");
            w.WriteAttributeString("variableLength", "false");
            w.WriteString(p.Type);
            w.WriteEndElement();
        }
        w.WriteStartElement("dev", "type", Dev);
        w.WriteElementString("maml", "name", Maml, p.Type);
        w.WriteElementString("maml", "uri", Maml, "");
        w.WriteEndElement();
        w.WriteElementString("dev", "defaultValue", Dev, p.DefaultValue);
        w.WriteEndElement();
    }

    private static void Types(XmlWriter w, string listElement, string itemElement, List<TypeHelp> types)
    {
        w.WriteStartElement("command", listElement, Command);
        foreach (var type in types)
        {
            w.WriteStartElement("command", itemElement, Command);
            w.WriteStartElement("dev", "type", Dev);
            w.WriteElementString("maml", "name", Maml, type.TypeName);
            w.WriteEndElement();
            Description(w, type.Description);
            w.WriteEndElement();
        }
        w.WriteEndElement();
    }

    private static void Description(XmlWriter w, string text)
    {
        w.WriteStartElement("maml", "description", Maml);
        Paras(w, text);
        w.WriteEndElement();
    }

    /// <summary>One maml:para per paragraph; lines within a paragraph are joined (markdown soft breaks).</summary>
    private static void Paras(XmlWriter w, string text)
    {
        var paragraphs = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (paragraphs.Length == 0)
            w.WriteElementString("maml", "para", Maml, "");
        foreach (var paragraph in paragraphs)
            w.WriteElementString("maml", "para", Maml, Unmarkdown(paragraph));
    }

    /// <summary>Plain text for Get-Help: soft line breaks joined, list items kept on their own lines, `code` marks dropped.</summary>
    internal static string Unmarkdown(string paragraph)
    {
        var lines = paragraph.Split('\n');
        var builder = new StringBuilder();
        foreach (var raw in lines)
        {
            var line = raw.Trim();
            var listItem = line.StartsWith("- ", StringComparison.Ordinal) || line.StartsWith("* ", StringComparison.Ordinal);
            if (builder.Length > 0)
                builder.Append(listItem ? "\n" : " ");
            builder.Append(line);
        }
        return InlineCode.Strip(builder.ToString());
    }

    private sealed class Utf8StringWriter : StringWriter
    {
        public Utf8StringWriter(StringBuilder builder) : base(builder, System.Globalization.CultureInfo.InvariantCulture) { }
        public override Encoding Encoding => new UTF8Encoding(false);
    }
}
