namespace KvmPS.Management.Remote;

/// <summary>
/// How <see cref="SshTransport"/> runs ssh. The local user configures these (parameters, environment); none of them
/// comes from a remote host or a manifest, so they are passed to ssh as separate arguments, never parsed.
/// </summary>
public sealed record SshTransportOptions
{
    /// <summary>The ssh client (<c>KVMPS_SSH</c>); default <c>ssh</c> from PATH.</summary>
    public string SshProgram { get; init; } = "ssh";

    /// <summary>A private key for <c>ssh -i</c>; null lets ssh pick the user's keys and agent.</summary>
    public string? KeyFilePath { get; init; }

    /// <summary>An ssh_config file for <c>ssh -F</c> (<c>KVMPS_SSH_CONFIG</c>), e.g. a known_hosts location.</summary>
    public string? ConfigFilePath { get; init; }

    /// <summary>The kvmps command on the remote host (<c>KVMPS_REMOTE_KVMPS</c>); default <c>kvmps</c> from its PATH.</summary>
    public string RemoteKvmps { get; init; } = "kvmps";

    /// <summary>ssh's ConnectTimeout: how long to wait for the TCP connection.</summary>
    public int ConnectTimeoutSeconds { get; init; } = 10;

    /// <summary>How long the whole remote command may take before ssh is killed; null waits for ever.</summary>
    public TimeSpan? CommandTimeout { get; init; }

    /// <summary>The defaults, with <c>KVMPS_SSH</c>, <c>KVMPS_SSH_CONFIG</c> and <c>KVMPS_REMOTE_KVMPS</c> applied.</summary>
    public static SshTransportOptions FromEnvironment(Func<string, string?>? getEnvironment = null)
    {
        getEnvironment ??= Environment.GetEnvironmentVariable;
        var options = new SshTransportOptions();
        if (getEnvironment("KVMPS_SSH") is { Length: > 0 } ssh)
            options = options with { SshProgram = ssh };
        if (getEnvironment("KVMPS_SSH_CONFIG") is { Length: > 0 } config)
            options = options with { ConfigFilePath = config };
        if (getEnvironment("KVMPS_REMOTE_KVMPS") is { Length: > 0 } remote)
            options = options with { RemoteKvmps = remote };
        return options;
    }
}
