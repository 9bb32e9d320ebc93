using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using KvmPS.Management.Store;

namespace KvmPS.PowerShell.Completers;

/// <summary>Tab completion of VM names from the store (every -Name of the VM cmdlets).</summary>
public sealed class VmNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var store = TryOpenExistingStore();
        IReadOnlyList<string> names;
        try
        {
            names = store?.ListNames() ?? Array.Empty<string>();
        }
        catch (Exception)
        {
            return Array.Empty<CompletionResult>();
        }
        return Complete(names, wordToComplete).Select(text => new CompletionResult(text, text, CompletionResultType.ParameterValue, text)).ToList();
    }

    /// <summary>
    /// The store at $KVMPS_HOME (or the default location) when it exists, else null: completion must never create
    /// the store, and a store that is busy or unreadable just completes nothing.
    /// </summary>
    internal static VmStore? TryOpenExistingStore()
    {
        try
        {
            var root = VmStoreLocation.ResolveDefaultRoot();
            return Directory.Exists(Path.Combine(root, "vms")) ? VmStore.Open(root, lockTimeoutMs: 500) : null;
        }
        catch (Exception)
        {
            return null;
        }
    }

    /// <summary>The completion texts for <paramref name="word"/> (case-insensitive prefix; quotes stripped and re-added as typed).</summary>
    internal static IReadOnlyList<string> Complete(IReadOnlyList<string> names, string? word)
    {
        var typed = word ?? "";
        var quote = typed.Length > 0 && typed[0] is '\'' or '"' ? typed[0].ToString() : "";
        var prefix = typed.Trim('\'', '"');
        return names
            .Where(n => n.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.OrdinalIgnoreCase)
            .Select(n => quote.Length > 0 ? quote + n + quote : n)
            .ToList();
    }
}
