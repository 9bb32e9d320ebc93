using System.Management.Automation;
using KvmPS.Management.Remote;
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

    public KvmRemoteVm Wrap(RemoteVmInfo info) => new(info, UserName, KeyFilePath);

    /// <summary>The VM names on the host, for -Name wildcards.</summary>
    public IReadOnlyList<string> ListNames() => Kvmps.List().Select(v => v.Name).ToList();

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
