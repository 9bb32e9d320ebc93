using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using KvmPS.Management.Pools;

namespace KvmPS.PowerShell.Completers;

/// <summary>Tab completion of storage pool names from the store (-Pool, and -Name of the pool cmdlets).</summary>
public sealed class StoragePoolNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        IReadOnlyList<string> names;
        try
        {
            var store = VmNameCompleter.TryOpenExistingStore();
            names = store is null ? [StoragePoolNames.DefaultPool] : StoragePoolRegistry.List(store.Root).Select(p => p.Name).ToList();
        }
        catch (Exception)
        {
            return [];
        }
        return VmNameCompleter.Complete(names, wordToComplete).Select(text => new CompletionResult(text, text, CompletionResultType.ParameterValue, text)).ToList();
    }
}

/// <summary>Tab completion of volume names in the pool given with -Pool (or <c>default</c>).</summary>
public sealed class StorageVolumeNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        IReadOnlyList<string> names;
        try
        {
            var store = VmNameCompleter.TryOpenExistingStore();
            var pool = fakeBoundParameters["Pool"] as string ?? StoragePoolNames.DefaultPool;
            names = store is null ? [] : new StoragePoolManager(store).ListVolumes(pool).Select(v => v.Name).ToList();
        }
        catch (Exception)
        {
            return [];
        }
        return VmNameCompleter.Complete(names, wordToComplete).Select(text => new CompletionResult(text, text, CompletionResultType.ParameterValue, text)).ToList();
    }
}
