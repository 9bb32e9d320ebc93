namespace KvmPS.Management.Remote;

/// <summary>
/// A host (and optional user) to reach over SSH, validated so that neither can be parsed by <c>ssh</c> as an
/// option or split by a shell: a name that starts with '-' (<c>-oProxyCommand=...</c>), holds whitespace, control
/// characters, quotes or shell metacharacters is refused here, before any process runs.
/// </summary>
public sealed record SshTarget
{
    /// <summary>Longest DNS name (RFC 1035); longer input is refused rather than passed on.</summary>
    public const int HostNameMaximumLength = 253;

    /// <summary>Longest user name Debian's useradd accepts.</summary>
    public const int UserNameMaximumLength = 32;

    public SshTarget(string hostName, string? userName = null)
    {
        HostName = ValidateHostName(hostName);
        UserName = userName is null ? null : ValidateUserName(userName, hostName);
    }

    public string HostName { get; }
    public string? UserName { get; }

    /// <summary>Parses <c>[user@]host</c> (as ssh and scp take it).</summary>
    public static SshTarget Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var at = text.IndexOf('@');
        return at < 0 ? new SshTarget(text) : new SshTarget(text[(at + 1)..], text[..at]);
    }

    /// <summary>The host name as given: letters, digits, '.', '-', '_', ':' (IPv6) and '%' (an IPv6 zone), not starting with '-'.</summary>
    public static string ValidateHostName(string hostName)
    {
        ArgumentNullException.ThrowIfNull(hostName);
        if (hostName.Length == 0)
            throw new InvalidRemoteNameException(hostName, "host name", "is empty");
        if (hostName.Length > HostNameMaximumLength)
            throw new InvalidRemoteNameException(hostName, "host name", $"is longer than {HostNameMaximumLength} characters");
        if (hostName[0] == '-')
            throw new InvalidRemoteNameException(hostName, "host name", "starts with '-' (ssh would read it as an option)");
        foreach (var c in hostName)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' or ':' or '%'))
                throw new InvalidRemoteNameException(hostName, "host name", $"contains {Describe(c)}; a host name has only letters, digits, '.', '-', '_' and ':'");
        return hostName;
    }

    /// <summary>The user name: letters, digits, '.', '-', '_' (a trailing '$' as Samba machine accounts), not starting with '-'.</summary>
    public static string ValidateUserName(string userName, string? hostName = null)
    {
        ArgumentNullException.ThrowIfNull(userName);
        var what = hostName is null ? "user name" : $"user name for host '{hostName}'";
        if (userName.Length == 0)
            throw new InvalidRemoteNameException(userName, what, "is empty");
        if (userName.Length > UserNameMaximumLength)
            throw new InvalidRemoteNameException(userName, what, $"is longer than {UserNameMaximumLength} characters");
        if (userName[0] == '-')
            throw new InvalidRemoteNameException(userName, what, "starts with '-' (ssh would read it as an option)");
        for (var i = 0; i < userName.Length; i++)
        {
            var c = userName[i];
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' || (c == '$' && i == userName.Length - 1)))
                throw new InvalidRemoteNameException(userName, what, $"contains {Describe(c)}; a user name has only letters, digits, '.', '-' and '_'");
        }
        return userName;
    }

    private static string Describe(char c) => char.IsControl(c) || char.IsWhiteSpace(c) ? $"the character U+{(int)c:X4}" : $"'{c}'";

    /// <summary><c>user@host</c> or <c>host</c>.</summary>
    public override string ToString() => UserName is null ? HostName : $"{UserName}@{HostName}";
}
