using System.Collections.ObjectModel;
using System.Reflection;

namespace KvmPS.HelpGen;

/// <summary>One [Parameter] attribute: the parameter's behaviour in one parameter set.</summary>
public sealed record ParameterSetData(string SetName, bool Mandatory, int Position, bool ValueFromPipeline, bool ValueFromPipelineByPropertyName)
{
    public const int NoPosition = int.MinValue;
}

public sealed record ParameterData(string Name, Type Type, IReadOnlyList<ParameterSetData> Sets, IReadOnlyList<string> Aliases, bool SupportsWildcards, bool HasArgumentCompleter);

public sealed record CmdletData(
    Type Type,
    string Verb,
    string Noun,
    string? DefaultParameterSetName,
    bool SupportsShouldProcess,
    string ConfirmImpact,
    IReadOnlyList<Type> OutputTypes,
    IReadOnlyList<ParameterData> Parameters)
{
    public string Name => Verb + "-" + Noun;
}

/// <summary>
/// Reads cmdlet metadata from attribute *data* (<see cref="CustomAttributeData"/>), not attribute instances:
/// PowerShellStandard.Library's System.Management.Automation is a stub whose attribute properties return
/// defaults, so only the recorded constructor and named arguments tell the truth outside pwsh.
/// </summary>
public static class CmdletMetadata
{
    public const string AllSets = "__AllParameterSets";

    public static IReadOnlyList<CmdletData> FromAssembly(Assembly assembly) =>
        assembly.GetExportedTypes().Where(t => !t.IsAbstract && Find(t.GetCustomAttributesData(), "CmdletAttribute").Any())
            .Select(FromType).OrderBy(c => c.Name, StringComparer.Ordinal).ToList();

    public static CmdletData FromType(Type type)
    {
        var cmdlet = Find(type.GetCustomAttributesData(), "CmdletAttribute").Single();
        var outputTypes = Find(type.GetCustomAttributesData(), "OutputTypeAttribute")
            .SelectMany(a => a.ConstructorArguments)
            .SelectMany(arg => arg.Value is ReadOnlyCollection<CustomAttributeTypedArgument> list ? list.Select(x => x.Value) : new[] { arg.Value })
            .OfType<Type>()
            .ToList();
        var parameters = new List<ParameterData>();
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            var data = property.GetCustomAttributesData();
            var sets = Find(data, "ParameterAttribute").Select(a => new ParameterSetData(
                Named(a, "ParameterSetName", AllSets),
                Named(a, "Mandatory", false),
                Named(a, "Position", ParameterSetData.NoPosition),
                Named(a, "ValueFromPipeline", false),
                Named(a, "ValueFromPipelineByPropertyName", false))).ToList();
            if (sets.Count == 0)
                continue;
            var aliases = Find(data, "AliasAttribute")
                .SelectMany(a => a.ConstructorArguments)
                .SelectMany(arg => arg.Value is ReadOnlyCollection<CustomAttributeTypedArgument> list ? list.Select(x => (string)x.Value!) : new[] { (string)arg.Value! })
                .ToList();
            parameters.Add(new ParameterData(property.Name, property.PropertyType, sets, aliases,
                Find(data, "SupportsWildcardsAttribute").Any(), Find(data, "ArgumentCompleterAttribute").Any()));
        }
        var impact = cmdlet.NamedArguments.Where(n => n.MemberName == "ConfirmImpact").Select(n => (int?)Convert.ToInt32(n.TypedValue.Value)).FirstOrDefault();
        return new CmdletData(
            type,
            (string)cmdlet.ConstructorArguments[0].Value!,
            (string)cmdlet.ConstructorArguments[1].Value!,
            Named<string?>(cmdlet, "DefaultParameterSetName", null),
            Named(cmdlet, "SupportsShouldProcess", false),
            impact is { } i ? ConfirmImpactName(i) : "Medium",
            outputTypes,
            parameters);
    }

    /// <summary>System.Management.Automation.ConfirmImpact: None 0, Low 1, Medium 2, High 3.</summary>
    private static string ConfirmImpactName(int value) => value switch { 0 => "None", 1 => "Low", 2 => "Medium", 3 => "High", _ => value.ToString() };

    private static IEnumerable<CustomAttributeData> Find(IList<CustomAttributeData> data, string name) =>
        data.Where(a => a.AttributeType.Name == name && a.AttributeType.Namespace == "System.Management.Automation");

    private static T Named<T>(CustomAttributeData attribute, string name, T fallback)
    {
        foreach (var argument in attribute.NamedArguments)
            if (argument.MemberName == name)
                return (T)argument.TypedValue.Value!;
        return fallback;
    }
}
