using System.Management.Automation;
using KvmPS.PowerShell.Completers;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Base of the VM cmdlets that also act on another host: the -Name/-Vm selection of <see cref="KvmVmCmdletBase"/> (the
/// same parameter sets, and locally the same selection, <see cref="KvmVmCmdletBase.ForEachVm"/>) on top of the
/// -HostName parameters of <see cref="KvmRemoteCmdletBase"/> (so <c>Get-KvmVm -HostName h2 | Stop-KvmVm</c> stays on
/// h2). With -HostName, each VM the names select there goes to <see cref="ProcessRemoteVm"/>, else to <see cref="ProcessVm"/>.
/// </summary>
public abstract class KvmRemoteVmCmdletBase : KvmRemoteCmdletBase
{
    internal const string NameSet = KvmVmCmdletBase.NameSet;
    internal const string VmSet = KvmVmCmdletBase.VmSet;

    [Parameter(ParameterSetName = NameSet, Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    [Alias("VMName")]
    public string[]? Name { get; set; }

    [Parameter(ParameterSetName = VmSet, Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNull]
    public KvmVm[]? Vm { get; set; }

    protected sealed override void ProcessLocal() => KvmVmCmdletBase.ForEachVm(this, Name, Vm, ProcessVm);

    internal sealed override void ProcessRemote(RemoteHost remote)
    {
        if (Vm is not null)
            throw KvmParameterException.Combination("Vm", Vm, "-Vm takes VMs of this host; for a VM on -HostName give -Name (or pipe Get-KvmVm -HostName).");
        foreach (var name in remote.SelectVms(Output, Name))
            ForTarget(name, () => ProcessRemoteVm(remote, name));
    }

    /// <summary>Acts on one VM of this host (exceptions become errors targeting the VM).</summary>
    protected abstract void ProcessVm(string name);

    /// <summary>Acts on one VM on the remote host.</summary>
    internal abstract void ProcessRemoteVm(RemoteHost remote, string name);
}
