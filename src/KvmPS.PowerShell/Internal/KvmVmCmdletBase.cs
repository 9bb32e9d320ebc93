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

    protected override void Process() => ForEachVm(this, Name, Vm, ProcessVm);

    /// <summary>
    /// The selection of this host's VMs that -Name and -Vm make, shared with <see cref="KvmRemoteVmCmdletBase"/>: each
    /// VM once, a plain name that matches none an error, one VM's failure not stopping the others.
    /// </summary>
    internal static void ForEachVm(KvmCmdletBase cmdlet, string[]? name, KvmVm[]? vm, Action<string> process)
    {
        var selection = VmResolver.Resolve(cmdlet.Manager.ListNames(), vm is null ? name : null, vm);
        foreach (var missing in selection.NotFound)
            cmdlet.Output.WriteError(KvmErrorMapping.VmNotFound(missing, cmdlet.Manager.StoreRoot));
        foreach (var selected in selection.Names)
        {
            // Errors target what the caller gave: the piped object, or the name.
            object target = vm?.FirstOrDefault(v => v is not null && v.Name == selected) ?? (object)selected;
            cmdlet.ForTarget(target, () => process(selected));
        }
    }

    /// <summary>Acts on one VM (exceptions become errors targeting the VM name).</summary>
    protected abstract void ProcessVm(string name);
}
