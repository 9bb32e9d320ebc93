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
        foreach (var name in remote.SelectVms(Output, Name))
            ForTarget(name, () => ProcessRemoteVm(remote, name));
    }

    /// <summary>Acts on one VM on the remote host.</summary>
    internal abstract void ProcessRemoteVm(RemoteHost remote, string name);

    /// <summary>
    /// One definition change there: <c>kvmps vm VERB --json OPTIONS -- NAME POSITIONALS</c> (setvcpus, setmem, attach-disk,
    /// ...), confirmed naming the host, its changes reported as here (<see cref="RemoteHost.ReportChange"/>), the VM
    /// after it with <paramref name="passThru"/>.
    /// </summary>
    internal void RemoteChange(RemoteHost remote, string name, string action, string verb, IEnumerable<string> options, IEnumerable<string> positionals,
        bool passThru, bool restartIfNeeded = false)
    {
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", action))
            return;
        using var json = remote.Run(["vm", verb, "--json", .. options, "--", name, .. positionals]);
        remote.ReportChange(this, json.RootElement, restartIfNeeded);
        if (passThru)
            Output.WriteObject(remote.Vm(name));
    }

    /// <summary>A number of bytes as kvmps takes a size ("4096B": it refuses a bare number).</summary>
    internal static string Bytes(long bytes) => bytes.ToString(System.Globalization.CultureInfo.InvariantCulture) + "B";

    /// <summary>A whole number as a kvmps argument.</summary>
    internal static string Number(long value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
