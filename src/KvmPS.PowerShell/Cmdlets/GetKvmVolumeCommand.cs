using System.Management.Automation;
using KvmPS.Management.Pools;
using KvmPS.Management.Selection;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Get-KvmVolume: the volumes of a pool with format, capacity, allocation, backing volume and the VMs using them.</summary>
[Cmdlet(VerbsCommon.Get, "KvmVolume")]
[OutputType(typeof(StorageVolumeInfo))]
public sealed class GetKvmVolumeCommand : KvmPoolCmdletBase
{
    /// <summary>Volume names or wildcards; every volume of the pool without it.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(StorageVolumeNameCompleter))]
    public string[]? Name { get; set; }

    /// <summary>The pool; <c>default</c> without it.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(StoragePoolNameCompleter))]
    public string Pool { get; set; } = StoragePoolNames.DefaultPool;

    protected override void ProcessLocal()
    {
        var volumes = Pools.ListVolumes(Pool);
        var byName = volumes.ToDictionary(v => v.Name, StringComparer.Ordinal);
        var selection = VmSelector.Select(volumes.Select(v => v.Name).ToList(), Name);
        foreach (var missing in selection.NotFound)
            Output.WriteError(ErrorFor(new StorageVolumeNotFoundException(Pool, missing, System.IO.Path.Combine(Pools.Definition(Pool).Path, missing)), missing));
        foreach (var name in selection.Names)
            Output.WriteObject(byName[name]);
    }

    internal override void ProcessRemote(RemoteHost remote)
    {
        foreach (var volume in remote.Select(Output, ["vol", "list", "--json", "--", Pool], RemoteObject.StorageVolume, Name, $"Volume in pool '{Pool}'", KvmErrorIds.StorageVolumeNotFound))
            Output.WriteObject(volume);
    }
}
