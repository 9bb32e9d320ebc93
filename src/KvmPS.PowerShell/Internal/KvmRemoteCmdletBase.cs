using System.Management.Automation;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Base of the cmdlets that are not about one VM's -Name/-Vm selection (networks, pools, volumes, checkpoints) and also
/// act on another host: -HostName, -UserName and -KeyFilePath (by property name from the pipeline, so a remote object
/// piped on stays on its host). With -HostName each record goes to <see cref="ProcessRemote"/>, else to <see cref="ProcessLocal"/>.
/// The VM cmdlets declare the same three in <see cref="KvmRemoteVmCmdletBase"/> (one base class: theirs brings -Name/-Vm).
/// </summary>
public abstract class KvmRemoteCmdletBase : KvmCmdletBase
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

    protected sealed override void Process()
    {
        if (RemoteHost.From(this, HostName, UserName, KeyFilePath) is { } remote)
            ProcessRemote(remote);
        else
            ProcessLocal();
    }

    /// <summary>This record on this host.</summary>
    protected abstract void ProcessLocal();

    /// <summary>This record on <paramref name="remote"/> (kvmps --json there).</summary>
    internal abstract void ProcessRemote(RemoteHost remote);

    /// <summary>
    /// One kvmps command there per name (net start, pool remove, ...): each confirmed as <paramref name="target"/> on
    /// the host, a failure an error naming it that does not stop the others; the answer is written with <paramref name="write"/>.
    /// </summary>
    internal void ForEachRemote(RemoteHost remote, IEnumerable<string> names, Func<string, string> target, string action,
        Func<string, IReadOnlyList<string>> arguments, string typeName, bool write)
    {
        foreach (var name in names)
            ForTarget(name, () =>
            {
                if (!Output.ShouldProcess($"{target(name)} on host {remote.Display}", action))
                    return;
                foreach (var answer in remote.Objects(arguments(name), typeName))
                    if (write)
                        Output.WriteObject(answer);
            });
    }
}
