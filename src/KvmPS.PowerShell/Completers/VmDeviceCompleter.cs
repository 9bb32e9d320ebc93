using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using KvmPS.Management.Definitions;
using KvmPS.Management.Store;

namespace KvmPS.PowerShell.Completers;

/// <summary>
/// Tab completion of what a VM has attached, for the Remove-Kvm* device cmdlets: disk paths (-Path), MAC
/// addresses (-MacAddress), PCI addresses (-Address) of the VMs -Name selects (every VM when -Name is not typed
/// yet), as Hyper-V's Remove-VM* cmdlets complete. A file path is no use there: only attached devices match.
/// </summary>
public sealed class VmDeviceCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        IReadOnlyList<VmDefinition> definitions;
        var store = VmNameCompleter.TryOpenExistingStore();
        if (store is null)
            return Array.Empty<CompletionResult>();
        try
        {
            var patterns = Names(fakeBoundParameters["Name"] ?? fakeBoundParameters["VMName"]);
            definitions = store.List()
                .Where(d => patterns.Count == 0 || patterns.Any(p => p.IsMatch(d.Name)))
                .ToList();
        }
        catch (Exception)
        {
            return Array.Empty<CompletionResult>();
        }
        var values = Devices(parameterName, definitions);
        return VmNameCompleter.Complete(values, wordToComplete)
            .Select(text => new CompletionResult(Quote(text), text, CompletionResultType.ParameterValue, text)).ToList();
    }

    /// <summary>The attached devices <paramref name="parameterName"/> names, once each, in definition order.</summary>
    internal static IReadOnlyList<string> Devices(string parameterName, IEnumerable<VmDefinition> definitions) =>
        definitions.SelectMany(d => parameterName switch
            {
                "Path" => d.Disks.Select(disk => disk.Path),
                "MacAddress" => d.NetworkAdapters.Select(a => a.MacAddress.ToString()),
                "Address" => d.PciPassthrough.Select(a => a.ToString()),
                "VfioUserSocket" => d.VfioUserDevices,
                _ => Enumerable.Empty<string>(),
            })
            .Distinct(StringComparer.OrdinalIgnoreCase)
            .ToList();

    private static List<WildcardPattern> Names(object? bound) =>
        (bound switch
        {
            string s => new[] { s },
            IEnumerable e => e.Cast<object?>().Select(o => o?.ToString() ?? ""),
            _ => Array.Empty<string>(),
        })
        .Where(s => s.Length > 0)
        .Select(s => new WildcardPattern(s, WildcardOptions.IgnoreCase))
        .ToList();

    // A disk path with spaces needs quotes to stay one argument.
    private static string Quote(string text) =>
        text.Length > 0 && text[0] is not ('\'' or '"') && text.Any(char.IsWhiteSpace) ? $"'{text.Replace("'", "''")}'" : text;
}
