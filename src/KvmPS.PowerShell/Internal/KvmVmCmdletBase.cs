using System.Management.Automation;
using KvmPS.PowerShell.Completers;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Base of cmdlets that act on existing VMs: the Hyper-V style <c>-Name</c> (wildcards, by property name from
/// the pipeline) and <c>-Vm</c> (KvmVm objects from the pipeline) parameter sets. Each selected VM is processed
/// once; a plain name that matches nothing is a VmNotFound error, and one VM's failure does not stop the others.
/// </summary>
public abstract class KvmVmCmdletBase : KvmCmdletBase
{
    internal const string NameSet = "Name";
    internal const string VmSet = "Vm";

    [Parameter(ParameterSetName = NameSet, Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    [Alias("VMName")]
    public string[]? Name { get; set; }

    [Parameter(ParameterSetName = VmSet, Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNull]
    public KvmVm[]? Vm { get; set; }

    protected override void Process()
    {
        foreach (var name in SelectVms())
        {
            // Errors target what the caller gave: the piped object, or the name.
            object target = Vm?.FirstOrDefault(v => v is not null && v.Name == name) ?? (object)name;
            ForTarget(target, () => ProcessVm(name));
        }
    }

    /// <summary>The VMs this record targets; reports the names that match no VM.</summary>
    internal IReadOnlyList<string> SelectVms()
    {
        var selection = VmResolver.Resolve(Manager.ListNames(), Vm is null ? Name : null, Vm);
        foreach (var missing in selection.NotFound)
            Output.WriteError(KvmErrorMapping.VmNotFound(missing, Manager.StoreRoot));
        return selection.Names;
    }

    /// <summary>Acts on one VM (exceptions become errors targeting the VM name).</summary>
    protected abstract void ProcessVm(string name);
}
