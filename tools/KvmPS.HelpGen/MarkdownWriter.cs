using System.Text;

namespace KvmPS.HelpGen;

/// <summary>Writes a <see cref="CommandHelp"/> as a platyPS (schema 2.0.0) markdown page.</summary>
public static class MarkdownWriter
{
    public const string CommonParametersText =
        "This cmdlet supports the common parameters: -Debug, -ErrorAction, -ErrorVariable, -InformationAction, -InformationVariable, -OutVariable, -OutBuffer, -PipelineVariable, -ProgressAction, -Verbose, -WarningAction, and -WarningVariable. For more information, see [about_CommonParameters](http://go.microsoft.com/fwlink/?LinkID=113216).";

    public static string Write(CommandHelp help)
    {
        var b = new StringBuilder();
        b.Append("---\n");
        foreach (var key in new[] { "external help file", "Module Name", "online version", "schema" })
            b.Append(key).Append(':').Append(help.Metadata.TryGetValue(key, out var v) && v.Length > 0 ? " " + v : "").Append('\n');
        b.Append("---\n\n");
        b.Append("# ").Append(help.Name).Append("\n\n");
        b.Append("## SYNOPSIS\n").Append(help.Synopsis).Append("\n\n");
        b.Append("## SYNTAX\n\n");
        foreach (var block in help.Syntax)
        {
            if (block.ParameterSetName is not null)
                b.Append("### ").Append(block.ParameterSetName).Append(block.IsDefault ? " (Default)" : "").Append('\n');
            b.Append("```\n").Append(block.Text).Append("\n```\n\n");
        }
        b.Append("## DESCRIPTION\n").Append(help.Description).Append("\n\n");
        b.Append("## EXAMPLES\n\n");
        foreach (var example in help.Examples)
        {
            b.Append("### ").Append(example.Title).Append('\n');
            b.Append("```powershell\n").Append(example.Code).Append("\n```\n\n");
            if (example.Remarks.Length > 0)
                b.Append(example.Remarks).Append("\n\n");
        }
        b.Append("## PARAMETERS\n\n");
        foreach (var p in help.Parameters)
        {
            b.Append("### -").Append(p.Name).Append('\n').Append(p.Description).Append("\n\n");
            b.Append("```yaml\n");
            b.Append("Type: ").Append(p.Type).Append('\n');
            b.Append("Parameter Sets: ").Append(string.Join(", ", p.ParameterSets)).Append('\n');
            b.Append("Aliases:").Append(p.Aliases.Length > 0 ? " " + p.Aliases : "").Append("\n\n");
            b.Append("Required: ").Append(p.Required ? "True" : "False").Append('\n');
            b.Append("Position: ").Append(p.Position).Append('\n');
            b.Append("Default value: ").Append(p.DefaultValue).Append('\n');
            b.Append("Accept pipeline input: ").Append(p.PipelineInput).Append('\n');
            b.Append("Accept wildcard characters: ").Append(p.Globbing ? "True" : "False").Append('\n');
            b.Append("```\n\n");
        }
        b.Append("### CommonParameters\n").Append(CommonParametersText).Append("\n\n");
        b.Append("## INPUTS\n\n");
        foreach (var t in help.Inputs)
            b.Append("### ").Append(t.TypeName).Append('\n').Append(t.Description.Length > 0 ? t.Description + "\n" : "").Append('\n');
        b.Append("## OUTPUTS\n\n");
        foreach (var t in help.Outputs)
            b.Append("### ").Append(t.TypeName).Append('\n').Append(t.Description.Length > 0 ? t.Description + "\n" : "").Append('\n');
        b.Append("## NOTES\n");
        if (help.Notes.Length > 0)
            b.Append(help.Notes).Append('\n');
        b.Append("\n## RELATED LINKS\n\n");
        foreach (var link in help.RelatedLinks)
            b.Append('[').Append(link.Text).Append("](").Append(link.Uri).Append(")\n\n");
        return b.ToString().TrimEnd('\n') + "\n";
    }
}
