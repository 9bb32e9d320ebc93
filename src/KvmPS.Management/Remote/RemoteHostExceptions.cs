namespace KvmPS.Management.Remote;

/// <summary>A host or user name that could inject options into ssh or a shell; refused before ssh runs.</summary>
public sealed class InvalidRemoteNameException(string value, string what, string reason)
    : ArgumentException($"The {what} '{Printable(value)}' {reason}.")
{
    public string Value { get; } = value;

    // Control characters in the message would garble a terminal: show them escaped.
    private static string Printable(string value) =>
        string.Concat(value.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));
}

/// <summary>Running kvmps on another host failed before the remote kvmps could answer. Names the host.</summary>
public class RemoteHostException : Exception
{
    public RemoteHostException(string hostName, string message, string? sshError = null, Exception? inner = null)
        : base(message, inner)
    {
        HostName = hostName;
        SshError = sshError;
    }

    /// <summary>The host as the user named it (<c>user@host</c> when a user was given).</summary>
    public string HostName { get; }

    /// <summary>What ssh printed on its standard error, when it printed anything.</summary>
    public string? SshError { get; }
}

/// <summary>The host name does not resolve, nothing listens on its SSH port, or the connection timed out or broke.</summary>
public sealed class RemoteHostUnreachableException(string hostName, string sshError)
    : RemoteHostException(hostName, $"Host '{hostName}' is unreachable over SSH: {sshError}", sshError);

/// <summary>The host refused every key offered (or the host key is unknown or changed): nothing ran there.</summary>
public sealed class RemoteAuthenticationException(string hostName, string sshError, bool hostKey)
    : RemoteHostException(hostName, hostKey
        ? $"Host '{hostName}' could not be verified (its host key is not in known_hosts, or changed): {sshError}"
        : $"Host '{hostName}' refused the SSH key (key-based login only; check -KeyFilePath/--identity and the remote authorized_keys): {sshError}", sshError)
{
    /// <summary>True when our side refused the host's key; false when the host refused ours.</summary>
    public bool HostKey { get; } = hostKey;
}

/// <summary>The ssh login worked but the host has no kvmps on the PATH of a non-interactive login (exit status 126/127).</summary>
public sealed class RemoteKvmpsNotFoundException(string hostName, string command, string sshError)
    : RemoteHostException(hostName, $"Host '{hostName}' has no usable '{command}' (install KvmPS there, or set KVMPS_REMOTE_KVMPS to its path): {sshError}", sshError)
{
    public string Command { get; } = command;
}

/// <summary>The local ssh client could not be started (openssh-client not installed, or KVMPS_SSH names nothing).</summary>
public sealed class SshClientNotFoundException(string hostName, string program, Exception inner)
    : RemoteHostException(hostName, $"Cannot reach host '{hostName}': the ssh client '{program}' could not be started ({inner.Message}); install openssh-client.", null, inner)
{
    public string Program { get; } = program;
}

/// <summary>The remote command did not finish within the timeout; ssh was killed (the remote command may still run).</summary>
public sealed class RemoteTimeoutException(string hostName, TimeSpan timeout)
    : RemoteHostException(hostName, $"kvmps on host '{hostName}' did not answer within {timeout.TotalSeconds:0.#} s; the ssh session was ended.");
