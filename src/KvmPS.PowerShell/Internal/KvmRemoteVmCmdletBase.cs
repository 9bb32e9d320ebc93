using System.Management.Automation;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Base of the VM cmdlets that also act on another host: <see cref="KvmVmCmdletBase"/> plus -HostName, -UserName
/// and -KeyFilePath (all by property name from the pipeline, so <c>Get-KvmVm -HostName h2 | Stop-KvmVm</c> stays on
/// h2). With -HostName, each selected VM goes to <see cref="ProcessRemoteVm"/> through <see cref="RemoteHost"/>.
/// </summary>
public abstract class KvmRemoteVmCmdletBase : KvmVmCmdletBase
{
    /// <summary>The host to act on over SSH (<c>host</c> or <c>user@host</c>); this host without it.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("ComputerName")]
    public string? HostName { get; set; }

    /// <summary>The SSH user on -HostName (default: ssh's, e.g. from ~/.ssh/config).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? UserName { get; set; }

    /// <summary>The private key to log in to -HostName with (key-based only; default: ssh's keys and agent).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? KeyFilePath { get; set; }

    protected override void Process()
    {
        var remote = RemoteHost.From(this, HostName, UserName, KeyFilePath);
        if (remote is null)
        {
            base.Process();
            return;
        }
        if (Vm is not null)
            throw KvmParameterException.Combination("Vm", Vm, "-Vm takes VMs of this host; for a VM on -HostName give -Name (or pipe Get-KvmVm -HostName).");
        var selection = VmResolver.Resolve(remote.ListNames(), Name, null);
        foreach (var missing in selection.NotFound)
            Output.WriteError(remote.VmNotFound(missing));
        foreach (var name in selection.Names)
            ForTarget(name, () => ProcessRemoteVm(remote, name));
    }

    /// <summary>Acts on one VM on the remote host.</summary>
    internal abstract void ProcessRemoteVm(RemoteHost remote, string name);
}
