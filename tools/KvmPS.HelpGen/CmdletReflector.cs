using System.Management.Automation;
using System.Reflection;
using System.Text;

namespace KvmPS.HelpGen;

/// <summary>Builds the SYNTAX and PARAMETERS parts of help pages from the cmdlet classes in an assembly.</summary>
public static class CmdletReflector
{
    public const string AllSets = "__AllParameterSets";

    public static IEnumerable<Type> CmdletTypes(Assembly assembly) => CmdletMetadata.FromAssembly(assembly).Select(c => c.Type);

    public static string CommandName(Type type) => CmdletMetadata.FromType(type).Name;

    /// <summary>A page with the generated SYNTAX, PARAMETERS, INPUTS and OUTPUTS; texts taken from <paramref name="existing"/> where it has them.</summary>
    public static CommandHelp Describe(Type type, CommandHelp? existing)
    {
        var cmdlet = CmdletMetadata.FromType(type);
        var help = new CommandHelp { Name = CommandName(type) };
        help.Metadata["external help file"] = "KvmPS.dll-Help.xml";
        help.Metadata["Module Name"] = "KvmPS";
        help.Metadata["online version"] = existing?.Metadata.GetValueOrDefault("online version") ?? "";
        help.Metadata["schema"] = "2.0.0";
        help.Synopsis = existing?.Synopsis is { Length: > 0 } s ? s : "{{ Fill in the Synopsis }}";
        help.Description = existing?.Description is { Length: > 0 } d ? d : "{{ Fill in the Description }}";
        if (existing is not null)
            help.Examples.AddRange(existing.Examples);
        if (help.Examples.Count == 0)
            help.Examples.Add(new ExampleHelp { Title = "Example 1", Code = $"PS> {help.Name}", Remarks = "{{ Add example description here }}" });

        var parameters = cmdlet.Parameters.ToList();
        var sets = parameters.SelectMany(p => p.Sets.Select(a => a.SetName)).Where(n => n != AllSets).Distinct().ToList();
        var defaultSet = cmdlet.DefaultParameterSetName;
        if (sets.Count == 0)
            help.Syntax.Add(new SyntaxBlock(null, false, SyntaxLine(help.Name, parameters, AllSets, cmdlet.SupportsShouldProcess)));
        else
            foreach (var set in sets.OrderBy(s => s == defaultSet ? 0 : 1))
                help.Syntax.Add(new SyntaxBlock(set, set == defaultSet, SyntaxLine(help.Name, parameters, set, cmdlet.SupportsShouldProcess)));

        foreach (var p in parameters.OrderBy(p => p.Name, StringComparer.OrdinalIgnoreCase))
        {
            var old = existing?.Parameters.FirstOrDefault(x => x.Name.Equals(p.Name, StringComparison.OrdinalIgnoreCase));
            var parameter = new ParameterHelp
            {
                Name = p.Name,
                Description = old?.Description is { Length: > 0 } pd ? pd : "{{ Fill " + p.Name + " Description }}",
                Type = TypeName(p.Type),
                Aliases = p.Aliases.Count == 0 ? "" : string.Join(", ", p.Aliases),
                Required = p.Sets.All(a => a.Mandatory),
                Position = p.Sets.Select(a => a.Position).Where(x => x != int.MinValue).Select(x => x.ToString()).FirstOrDefault() ?? "Named",
                // A switch is False unless given; other defaults live in property initializers, which metadata does not
                // show, so they are written in the page (and checked against the code by the module's tests).
                DefaultValue = old?.DefaultValue is { Length: > 0 } dv && dv != "None" ? dv : TypeName(p.Type) == "SwitchParameter" ? "False" : "None",
                PipelineInput = PipelineInput(p.Sets),
                Globbing = p.SupportsWildcards,
            };
            parameter.ParameterSets.AddRange(p.Sets.Any(a => a.SetName == AllSets) ? new[] { "(All)" } : p.Sets.Select(a => a.SetName));
            help.Parameters.Add(parameter);
        }
        if (cmdlet.SupportsShouldProcess)
        {
            help.Parameters.Add(RiskParameter("Confirm", "cf", "Prompts you for confirmation before running the cmdlet.", existing));
            help.Parameters.Add(RiskParameter("WhatIf", "wi", "Shows what would happen if the cmdlet runs. The cmdlet is not run.", existing));
        }
        help.CommonParameters = true;

        if (existing is { Inputs.Count: > 0 })
            help.Inputs.AddRange(existing.Inputs);
        else
            foreach (var input in parameters.Where(p => p.Sets.Any(a => a.ValueFromPipeline || a.ValueFromPipelineByPropertyName)).Select(p => p.Type.FullName!).Distinct())
                help.Inputs.Add(new TypeHelp(CleanTypeName(input), ""));
        if (existing is { Outputs.Count: > 0 })
            help.Outputs.AddRange(existing.Outputs);
        else
            foreach (var output in cmdlet.OutputTypes)
                help.Outputs.Add(new TypeHelp(output.FullName!, ""));
        help.Notes = existing?.Notes ?? "";
        if (existing is not null)
            help.RelatedLinks.AddRange(existing.RelatedLinks);
        return help;
    }

    private static ParameterHelp RiskParameter(string name, string alias, string description, CommandHelp? existing)
    {
        var old = existing?.Parameters.FirstOrDefault(x => x.Name.Equals(name, StringComparison.OrdinalIgnoreCase));
        var p = new ParameterHelp
        {
            Name = name,
            Description = old?.Description is { Length: > 0 } d ? d : description,
            Type = "SwitchParameter",
            Aliases = alias,
            DefaultValue = "False",
        };
        p.ParameterSets.Add("(All)");
        return p;
    }

    private static string SyntaxLine(string name, List<ParameterData> parameters, string set, bool shouldProcess)
    {
        var inSet = parameters
            .Select(p => (p, a: p.Sets.FirstOrDefault(a => a.SetName == set) ?? p.Sets.FirstOrDefault(a => a.SetName == AllSets)))
            .Where(x => x.a is not null)
            .ToList();
        var ordered = inSet.Where(x => x.a!.Position != int.MinValue).OrderBy(x => x.a!.Position)
            .Concat(inSet.Where(x => x.a!.Position == int.MinValue && x.a.Mandatory))
            .Concat(inSet.Where(x => x.a!.Position == int.MinValue && !x.a.Mandatory));
        var builder = new StringBuilder(name);
        foreach (var (p, a) in ordered)
        {
            var type = TypeName(p.Type);
            var isSwitch = type == "SwitchParameter";
            var parameterName = a!.Position != int.MinValue ? $"[-{p.Name}]" : $"-{p.Name}";
            var text = isSwitch ? $"-{p.Name}" : $"{parameterName} <{type}>";
            builder.Append(' ').Append(a.Mandatory && !isSwitch ? text : $"[{text}]");
        }
        if (shouldProcess)
            builder.Append(" [-WhatIf] [-Confirm]");
        builder.Append(" [<CommonParameters>]");
        return builder.ToString();
    }

    private static string PipelineInput(IReadOnlyList<ParameterSetData> attributes)
    {
        var byValue = attributes.Any(a => a.ValueFromPipeline);
        var byName = attributes.Any(a => a.ValueFromPipelineByPropertyName);
        return (byValue, byName) switch
        {
            (true, true) => "True (ByPropertyName, ByValue)",
            (true, false) => "True (ByValue)",
            (false, true) => "True (ByPropertyName)",
            _ => "False",
        };
    }

    /// <summary>PowerShell's short type names: String[], Int32, SwitchParameter, DiskFormat (Nullable unwrapped).</summary>
    public static string TypeName(Type type)
    {
        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        return underlying.IsArray ? TypeName(underlying.GetElementType()!) + "[]" : underlying.Name;
    }

    private static string CleanTypeName(string fullName)
    {
        // System.Nullable`1[[System.Int64, ...]] → System.Int64
        const string nullable = "System.Nullable`1[[";
        if (fullName.StartsWith(nullable, StringComparison.Ordinal))
            return fullName[nullable.Length..fullName.IndexOf(',')];
        return fullName;
    }
}
