using System.Management.Automation;
using System.Text.RegularExpressions;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Management errors name definition fields by their schema keys (<c>VcpuCount</c>, <c>Boot.Cmdline</c>,
/// <c>Disks[0].Path</c>), the names manifests use. A cmdlet user typed parameters instead; this is the one table
/// from schema key to the parameter that sets it, resolved against the running cmdlet: a key is shown as
/// <c>-Parameter</c> only when the cmdlet has that parameter (by name or alias) in the parameter set in use,
/// so <c>New-KvmVm -Definition @{…}</c> errors keep the manifest keys the user wrote.
/// </summary>
internal sealed class CmdletParameterNames
{
    /// <summary>Schema key (list indexes dropped) → the parameter name used across the module for it.</summary>
    private static readonly IReadOnlyDictionary<string, string> SchemaToParameter = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["Name"] = "Name",
        ["VcpuCount"] = "ProcessorCount",
        ["VcpuMaximum"] = "MaximumProcessorCount",
        ["MemoryStartupBytes"] = "MemoryStartupBytes",
        ["MemoryMinimumBytes"] = "MemoryMinimumBytes",
        ["MemoryMaximumBytes"] = "MemoryMaximumBytes",
        ["BalloonEnabled"] = "BalloonEnabled",
        ["BalloonTarget"] = "TargetBytes",
        ["Autostart"] = "Autostart",
        ["Notes"] = "Notes",
        ["LogMaxBytes"] = "LogMaxBytes",
        ["LogFileCount"] = "LogFileCount",
        ["CpuRelativeWeight"] = "RelativeWeight",
        ["CpuMaximumPercent"] = "MaximumPercent",
        ["VmmOverheadLimitBytes"] = "VmmOverheadLimitBytes",
        ["Boot.KernelPath"] = "KernelPath",
        ["Boot.InitrdPath"] = "InitrdPath",
        ["Boot.Cmdline"] = "KernelArguments",
        ["Disks.Path"] = "Path",
        ["Disks.Format"] = "Format",
        ["Disks.SizeBytes"] = "SizeBytes",
        ["Disks.BackingImagePath"] = "BackingPath",
        ["Disks.ReadOnly"] = "ReadOnly",
        ["NetworkAdapters.Bridge"] = "BridgeName",
        ["NetworkAdapters.Tap"] = "TapName",
        ["NetworkAdapters.MacAddress"] = "MacAddress",
        ["PciPassthrough"] = "Address",
        ["VfioUserDevices"] = "VfioUserSocket",
        ["DvdDrive"] = "ControllerLocation",
    };

    // Longest keys first so "Boot.KernelPath" wins over a shorter key inside it.
    private static readonly Regex KeyPattern = new(
        @"(?<![\w.-])(" + string.Join("|", SchemaToParameter.Keys.OrderByDescending(k => k.Length).Select(Regex.Escape)) + @")(\[\d+\])?(?![\w\[])",
        RegexOptions.CultureInvariant);

    private static readonly Regex Index = new(@"\[\d+\]", RegexOptions.CultureInvariant);

    private readonly Dictionary<string, string> _byNameOrAlias = new(StringComparer.OrdinalIgnoreCase);

    public CmdletParameterNames(PSCmdlet cmdlet)
    {
        ArgumentNullException.ThrowIfNull(cmdlet);
        var command = cmdlet.MyInvocation?.MyCommand;
        if (command is null)
            return;
        var set = command.ParameterSets.FirstOrDefault(s => s.Name == cmdlet.ParameterSetName);
        var parameters = set?.Parameters.Select(p => (p.Name, Aliases: (IEnumerable<string>)p.Aliases))
                         ?? command.Parameters.Values.Select(p => (p.Name, Aliases: (IEnumerable<string>)p.Aliases));
        foreach (var (name, aliases) in parameters)
        {
            _byNameOrAlias.TryAdd(name, name);
            foreach (var alias in aliases)
                _byNameOrAlias.TryAdd(alias, name);
        }
    }

    /// <summary>The parameter (without dash) that sets <paramref name="schemaKey"/> in this invocation, or null.</summary>
    public string? ParameterFor(string schemaKey)
    {
        ArgumentNullException.ThrowIfNull(schemaKey);
        var key = Index.Replace(schemaKey, "");
        return SchemaToParameter.TryGetValue(key, out var parameter) && _byNameOrAlias.TryGetValue(parameter, out var actual) ? actual : null;
    }

    /// <summary>
    /// <paramref name="text"/> with every schema key that maps to a parameter of this invocation written as
    /// <c>-Parameter</c>; other words are left alone.
    /// </summary>
    public static string Rename(string text, Func<string, string?> parameterFor) =>
        KeyPattern.Replace(text, m => parameterFor(m.Value) is { } parameter ? "-" + parameter : m.Value);
}
