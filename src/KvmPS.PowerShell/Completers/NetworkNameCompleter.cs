using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace KvmPS.PowerShell.Completers;

/// <summary>
/// Tab completion of network names (-Network, and -Name of the network cmdlets) from the store's
/// <c>networks/&lt;name&gt;.network.json</c> files: reading the folder is enough, and completion never asks the host
/// (bridges, dnsmasq) for a network's state.
/// </summary>
public sealed class NetworkNameCompleter : IArgumentCompleter
{
    internal const string FileSuffix = ".network.json";

    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        IReadOnlyList<string> names;
        try
        {
            // Only the folder is read (no store lock): a store with networks but no VM yet completes too.
            var folder = Path.Combine(Management.Store.VmStoreLocation.ResolveDefaultRoot(), "networks");
            names = !Directory.Exists(folder)
                ? []
                : Directory.EnumerateFiles(folder, "*" + FileSuffix).Select(f => Path.GetFileName(f)[..^FileSuffix.Length]).ToList();
        }
        catch (Exception)
        {
            return [];
        }
        return VmNameCompleter.Complete(names, wordToComplete).Select(text => new CompletionResult(text, text, CompletionResultType.ParameterValue, text)).ToList();
    }
}
