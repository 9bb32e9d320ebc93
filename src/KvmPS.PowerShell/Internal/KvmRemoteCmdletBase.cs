using System.Globalization;
using System.Management.Automation;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// Base of every cmdlet that also acts on another host: -HostName, -UserName and -KeyFilePath (by property name from
/// the pipeline, so a remote object piped on stays on its host), declared here once. With -HostName each record goes
/// to <see cref="ProcessRemote"/>, else to <see cref="ProcessLocal"/>. The VM cmdlets derive from
/// <see cref="KvmRemoteVmCmdletBase"/>, which adds -Name/-Vm; the others (networks, pools, volumes, checkpoints, host
/// devices, New-KvmVm) from this class directly. The helpers below are the shared remote steps of both.
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

    /// <summary>
    /// One definition change there: <c>kvmps vm VERB --json OPTIONS -- NAME POSITIONALS</c> (setvcpus, setmem, attach-disk,
    /// ...), confirmed naming the host, its changes reported as here (<see cref="RemoteHost.ReportChange"/>), the VM
    /// after it with <paramref name="passThru"/>. <paramref name="verb"/> may be two words (<c>dvd add</c>).
    /// </summary>
    internal void RemoteChange(RemoteHost remote, string name, string action, string verb, IEnumerable<string> options, IEnumerable<string> positionals,
        bool passThru, bool restartIfNeeded = false)
    {
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", action))
            return;
        RemoteChangeConfirmed(remote, name, verb, options, positionals, restartIfNeeded);
        if (passThru)
            Output.WriteObject(remote.Vm(name));
    }

    /// <summary>As <see cref="RemoteChange"/>, already confirmed and without output (a cmdlet that sends several changes or writes something else).</summary>
    internal void RemoteChangeConfirmed(RemoteHost remote, string name, string verb, IEnumerable<string> options, IEnumerable<string> positionals, bool restartIfNeeded = false)
    {
        using var json = remote.Run(["vm", .. verb.Split(' '), "--json", .. options, "--", name, .. positionals]);
        remote.ReportChange(this, json.RootElement, restartIfNeeded);
    }

    /// <summary>A number of bytes as kvmps takes a size ("4096B": it refuses a bare number).</summary>
    internal static string Bytes(long bytes) => bytes.ToString(CultureInfo.InvariantCulture) + "B";

    /// <summary>A whole number as a kvmps argument.</summary>
    internal static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);
}
