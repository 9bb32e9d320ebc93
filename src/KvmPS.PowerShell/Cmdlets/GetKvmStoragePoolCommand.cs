using System.Management.Automation;
using KvmPS.Management.Pools;
using KvmPS.Management.Selection;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Get-KvmStoragePool: the storage pools with their file system's capacity, allocation and available space.</summary>
[Cmdlet(VerbsCommon.Get, "KvmStoragePool")]
[OutputType(typeof(StoragePoolInfo))]
public sealed class GetKvmStoragePoolCommand : KvmPoolCmdletBase
{
    /// <summary>Pool names or wildcards; every pool without it.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(StoragePoolNameCompleter))]
    public string[]? Name { get; set; }

    protected override void ProcessLocal()
    {
        var pools = Pools.List();
        var byName = pools.ToDictionary(p => p.Name, StringComparer.Ordinal);
        var selection = VmSelector.Select(pools.Select(p => p.Name).ToList(), Name);
        foreach (var missing in selection.NotFound)
            Output.WriteError(ErrorFor(new StoragePoolNotFoundException(missing, Manager.Store.Root), missing));
        foreach (var name in selection.Names)
            Output.WriteObject(byName[name]);
    }

    internal override void ProcessRemote(RemoteHost remote)
    {
        foreach (var pool in remote.Select(Output, ["pool", "list", "--json"], RemoteObject.StoragePool, Name, "Storage pool", KvmErrorIds.StoragePoolNotFound))
            Output.WriteObject(pool);
    }
}
