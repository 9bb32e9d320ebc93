using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using KvmPS.Management.Snapshots;

namespace KvmPS.PowerShell.Completers;

/// <summary>Tab completion of checkpoint names: those of the VMs named by -VMName (or -Name on Checkpoint-KvmVm), else of every VM.</summary>
public sealed class SnapshotNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var store = VmNameCompleter.TryOpenExistingStore();
        if (store is null)
            return Array.Empty<CompletionResult>();
        try
        {
            var vmNames = store.ListNames();
            var bound = fakeBoundParameters["VMName"] ?? (parameterName == "SnapshotName" ? fakeBoundParameters["Name"] : null);
            var wanted = bound switch
            {
                string one => [one],
                IEnumerable many => many.Cast<object>().Select(o => o?.ToString() ?? "").ToArray(),
                _ => null,
            };
            if (wanted is not null)
                vmNames = vmNames.Where(n => wanted.Any(w => WildcardPattern.Get(w, WildcardOptions.IgnoreCase).IsMatch(n))).ToList();
            var snapshots = new SnapshotStore(store);
            var names = vmNames.SelectMany(vm =>
            {
                try
                {
                    return snapshots.List(vm).Select(s => s.Name);
                }
                catch (Exception)
                {
                    return [];
                }
            }).Distinct().ToList();
            return VmNameCompleter.Complete(names, wordToComplete)
                .Select(text => new CompletionResult(Quote(text), text, CompletionResultType.ParameterValue, text)).ToList();
        }
        catch (Exception)
        {
            return Array.Empty<CompletionResult>();
        }
    }

    /// <summary>Default checkpoint names hold spaces and parentheses: quote them unless the user already did.</summary>
    private static string Quote(string text) =>
        text.Length > 0 && text[0] is '\'' or '"' ? text : text.IndexOfAny([' ', '(', ')', '\'', '$', '`', ';', ',']) >= 0 ? "'" + text.Replace("'", "''") + "'" : text;
}
