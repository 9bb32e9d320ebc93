namespace KvmPS.Cli;

/// <summary>The exit statuses of <c>kvmps</c> (docs/cli.md, "Exit codes"). Stable: scripts and systemd depend on them.</summary>
public static class ExitCodes
{
    /// <summary>Success; for <c>test</c>: the host is in the desired state.</summary>
    public const int Ok = 0;

    /// <summary><c>test</c>: the host drifts from the manifest (nothing failed).</summary>
    public const int Drift = 1;

    /// <summary>Bad command line: unknown verb or option, missing argument.</summary>
    public const int Usage = 2;

    /// <summary>A manifest (or DSC instance JSON) is missing, malformed or breaks the schema. Nothing was changed.</summary>
    public const int ManifestError = 3;

    /// <summary>An operation failed (a VM did not start, a step of apply failed, invalid state for the request, ...).</summary>
    public const int OperationFailed = 4;

    /// <summary>The named VM does not exist.</summary>
    public const int VmNotFound = 5;

    /// <summary>The environment is not usable: kvmps-vmm not found, store locked, corrupt or not accessible.</summary>
    public const int Environment = 6;

    /// <summary><c>--host</c>: the remote host could not be used: unreachable, it refused the SSH key, or it has no kvmps.
    /// (Once the remote kvmps runs, its own exit status is returned.)</summary>
    public const int RemoteHost = 7;
}
