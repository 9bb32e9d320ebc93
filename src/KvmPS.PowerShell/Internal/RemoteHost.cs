using System.Management.Automation;
using System.Text.Json;
using KvmPS.Management.Remote;
using KvmPS.Management.Selection;
using KvmPS.Management.Store;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// The shared -HostName/-UserName/-KeyFilePath path of the cmdlets (docs/remote.md): parameters in, the management
/// layer's <see cref="RemoteKvmps"/> (kvmps --json through ssh) in between, <see cref="KvmRemoteVm"/> objects out.
/// Nothing here speaks ssh or JSON itself.
/// </summary>
internal sealed class RemoteHost
{
    private RemoteHost(RemoteKvmps kvmps, string? userName, string? keyFilePath)
    {
        Kvmps = kvmps;
        UserName = userName;
        KeyFilePath = keyFilePath;
    }

    public RemoteKvmps Kvmps { get; }
    public string? UserName { get; }
    public string? KeyFilePath { get; }

    /// <summary>How errors and messages name the host: <c>user@host</c> or <c>host</c>.</summary>
    public string Display => Kvmps.Target.ToString();

    /// <summary>
    /// The host the parameters name, or null without -HostName. A name that ssh could read as an option is a
    /// parameter error (no ssh runs); -KeyFilePath is resolved against the PowerShell location.
    /// </summary>
    public static RemoteHost? From(KvmCmdletBase cmdlet, string? hostName, string? userName, string? keyFilePath)
    {
        if (hostName is null)
        {
            if (userName is not null || keyFilePath is not null)
                throw KvmParameterException.Combination("UserName", userName ?? keyFilePath, "-UserName and -KeyFilePath are for a remote host: give -HostName too.");
            return null;
        }
        SshTarget target;
        try
        {
            // -HostName 'user@host' is accepted as ssh takes it, unless -UserName names the user too.
            target = userName is null ? SshTarget.Parse(hostName) : new SshTarget(hostName, userName);
        }
        catch (InvalidRemoteNameException e)
        {
            throw new KvmParameterException(userName is not null && e.Value == userName ? "UserName" : "HostName", e.Value, e.Message, e);
        }
        var key = keyFilePath is null ? null : cmdlet.ResolvePath(keyFilePath);
        var options = SshTransportOptions.FromEnvironment() with { KeyFilePath = key };
        return new RemoteHost(new RemoteKvmps(target, new SshTransport(options)), target.UserName, key);
    }

    /// <summary>The host as objects name it (without the user).</summary>
    public string HostName => Kvmps.Target.HostName;

    public KvmRemoteVm Wrap(RemoteVmInfo info) => new(info, UserName, KeyFilePath);

    /// <summary>One VM as it is there now (a -PassThru after a change that answers with something else).</summary>
    public KvmRemoteVm Vm(string name) =>
        Kvmps.List().FirstOrDefault(v => v.Name == name) is { } info ? Wrap(info) : throw new VmNotFoundException(name, Display);

    /// <summary>Runs a kvmps command there that answers with one VM (vm save, vm import, vm new with the definition on <paramref name="standardInput"/>) and returns it.</summary>
    public KvmRemoteVm RunVm(IReadOnlyList<string> arguments, string? standardInput = null)
    {
        using var json = Run(arguments, standardInput);
        return Wrap(RemoteVmInfo.FromJson(Display, json.RootElement));
    }

    /// <summary>Runs <c>kvmps ARGUMENTS</c> there (the arguments include --json) and returns what it printed.</summary>
    public JsonDocument Run(IReadOnlyList<string> arguments, string? standardInput = null) => Kvmps.RunJson(arguments, standardInput);

    /// <summary>Runs <c>kvmps ARGUMENTS</c> there and returns its answer as objects with this host (<see cref="RemoteObject"/>).</summary>
    public IReadOnlyList<PSObject> Objects(IReadOnlyList<string> arguments, string typeName)
    {
        using var json = Run(arguments);
        return RemoteObject.Each(json.RootElement, this, typeName).ToList();
    }

    /// <summary>
    /// The names (the <c>name</c> field of a list answer) there that <paramref name="patterns"/> select (all without
    /// patterns), as the local cmdlets select; a plain name that matches none is an error of <paramref name="notFoundId"/>.
    /// </summary>
    public IReadOnlyList<PSObject> Select(ICmdletOutput output, IReadOnlyList<string> listArguments, string typeName, IReadOnlyList<string>? patterns, string kind, string notFoundId,
        string keyProperty = "Name")
    {
        var all = Objects(listArguments, typeName);
        var byName = all.GroupBy(o => (string)o.Properties[keyProperty].Value).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        var selection = VmSelector.Select(byName.Keys.ToList(), patterns);
        foreach (var missing in selection.NotFound)
            output.WriteError(new KvmError(new ItemNotFoundException($"{kind} '{missing}' was not found on host '{Display}'."), notFoundId, ErrorCategory.ObjectNotFound, missing));
        return selection.Names.Select(n => byName[n]).ToList();
    }

    /// <summary>
    /// Reports a remote definition change (<c>vm setvcpus|setmem --json</c>'s changes) as <see cref="KvmCmdletBase.ReportChange"/>
    /// does here: each change as verbose, and a change the running VM could not take: a restart with
    /// <paramref name="restartIfNeeded"/> (and confirmation), else a warning.
    /// </summary>
    public void ReportChange(KvmCmdletBase cmdlet, JsonElement answer, bool restartIfNeeded)
    {
        var name = answer.GetProperty("name").GetString();
        var pending = new List<string>();
        foreach (var change in answer.GetProperty("changes").EnumerateArray())
        {
            var property = change.GetProperty("property").GetString();
            var application = change.GetProperty("application").GetString();
            cmdlet.Output.WriteVerbose($"VM '{name}' on host '{Display}': {property}: {change.GetProperty("old")} -> {change.GetProperty("new")} ({application})");
            if (application == "RestartNeeded")
                pending.Add(property!);
        }
        if (pending.Count == 0 || name is null)
            return;
        var properties = string.Join(", ", pending);
        if (!restartIfNeeded)
            cmdlet.Output.WriteWarning($"VM '{name}' on host '{Display}' is {answer.GetProperty("state").GetString()}; the change to {properties} is stored and takes effect when the VM is restarted (use -RestartIfNeeded to restart it now).");
        else if (cmdlet.Output.ShouldProcess($"{name} on host {Display}", $"Restart the VM to apply {properties}"))
            Kvmps.Restart(name, turnOff: false);
    }

    /// <summary>The VM names on the host, for -Name wildcards.</summary>
    public IReadOnlyList<string> ListNames() => Kvmps.List().Select(v => v.Name).ToList();

    /// <summary>
    /// The VMs there that <paramref name="patterns"/> name. Plain names go as they are, without a listing first (one ssh
    /// session fewer per call): the remote kvmps answers a missing one with its "VM not found" status, which is the same
    /// VmNotFound error. Wildcards are matched against <c>vm list</c> there, as here; one that matches nothing is not an error.
    /// </summary>
    public IReadOnlyList<string> SelectVms(ICmdletOutput output, string[]? patterns)
    {
        if (patterns is { Length: > 0 } && !patterns.Any(WildcardPattern.ContainsWildcardCharacters))
            return patterns.Distinct(StringComparer.Ordinal).ToList();
        var selection = VmResolver.Resolve(ListNames(), patterns, null);
        foreach (var missing in selection.NotFound)
            output.WriteError(VmNotFound(missing));
        return selection.Names;
    }

    /// <summary>A name that matches no VM on the host.</summary>
    public KvmError VmNotFound(string name) =>
        new(new VmNotFoundException(name, Display), KvmErrorIds.VmNotFound, ErrorCategory.ObjectNotFound, name,
            $"VM '{name}' was not found on host '{Display}'.");
}

/// <summary>The error ids of remote-host failures (documented in about_KvmPS and docs/remote.md).</summary>
internal static class RemoteHostErrors
{
    public const string RemoteHostUnreachable = "RemoteHostUnreachable";
    public const string RemoteAuthenticationFailed = "RemoteAuthenticationFailed";
    public const string RemoteKvmpsNotFound = "RemoteKvmpsNotFound";
    public const string RemoteCommandFailed = "RemoteCommandFailed";
    public const string RemoteProtocolError = "RemoteProtocolError";
    public const string RemoteHostError = "RemoteHostError";

    public static KvmError Classify(RemoteHostException exception, object? target) => exception switch
    {
        RemoteHostUnreachableException e => new(e, RemoteHostUnreachable, ErrorCategory.ConnectionError, target ?? e.HostName),
        RemoteAuthenticationException e => new(e, RemoteAuthenticationFailed, ErrorCategory.AuthenticationError, target ?? e.HostName),
        RemoteKvmpsNotFoundException e => new(e, RemoteKvmpsNotFound, ErrorCategory.NotInstalled, target ?? e.HostName),
        SshClientNotFoundException e => new(e, RemoteHostError, ErrorCategory.NotInstalled, target ?? e.HostName),
        RemoteTimeoutException e => new(e, RemoteHostError, ErrorCategory.OperationTimeout, target ?? e.HostName),
        RemoteCommandFailedException { IsVmNotFound: true } e => new(e, KvmErrorIds.VmNotFound, ErrorCategory.ObjectNotFound, target ?? e.HostName),
        RemoteCommandFailedException e => new(e, RemoteCommandFailed, ErrorCategory.InvalidOperation, target ?? e.HostName),
        RemoteProtocolException e => new(e, RemoteProtocolError, ErrorCategory.ProtocolError, target ?? e.HostName),
        _ => new(exception, RemoteHostError, ErrorCategory.ConnectionError, target ?? exception.HostName),
    };
}
