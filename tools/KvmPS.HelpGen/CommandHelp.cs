namespace KvmPS.HelpGen;

/// <summary>One cmdlet's help page (the platyPS markdown schema 2.0.0 model).</summary>
public sealed class CommandHelp
{
    public string Name { get; set; } = "";
    public Dictionary<string, string> Metadata { get; } = new(StringComparer.OrdinalIgnoreCase);
    public string Synopsis { get; set; } = "";
    public List<SyntaxBlock> Syntax { get; } = new();
    public string Description { get; set; } = "";
    public List<ExampleHelp> Examples { get; } = new();
    public List<ParameterHelp> Parameters { get; } = new();

    /// <summary>The ### CommonParameters section is present.</summary>
    public bool CommonParameters { get; set; }

    public List<TypeHelp> Inputs { get; } = new();
    public List<TypeHelp> Outputs { get; } = new();
    public string Notes { get; set; } = "";
    public List<LinkHelp> RelatedLinks { get; } = new();

    public string Verb => Name.Contains('-') ? Name[..Name.IndexOf('-')] : Name;
    public string Noun => Name.Contains('-') ? Name[(Name.IndexOf('-') + 1)..] : "";
}

/// <param name="ParameterSetName">Null when the cmdlet has a single, unnamed set.</param>
public sealed record SyntaxBlock(string? ParameterSetName, bool IsDefault, string Text);

public sealed class ExampleHelp
{
    public string Title { get; set; } = "";
    public string Code { get; set; } = "";
    public string Remarks { get; set; } = "";
}

public sealed class ParameterHelp
{
    public string Name { get; set; } = "";
    public string Description { get; set; } = "";
    public string Type { get; set; } = "";
    public List<string> ParameterSets { get; } = new();
    public string Aliases { get; set; } = "";
    public bool Required { get; set; }
    public string Position { get; set; } = "Named";
    public string DefaultValue { get; set; } = "None";
    public string PipelineInput { get; set; } = "False";
    public bool Globbing { get; set; }

    /// <summary>Required/Position per parameter set when they differ (the yaml block repeats per set in platyPS; here one block lists all sets).</summary>
    public bool AppliesTo(string? set) => set is null || ParameterSets.Count == 0 || ParameterSets.Contains("(All)") || ParameterSets.Contains(set, StringComparer.OrdinalIgnoreCase);

    public bool IsSwitch => Type is "SwitchParameter";
}

public sealed record TypeHelp(string TypeName, string Description);

public sealed record LinkHelp(string Text, string Uri);
