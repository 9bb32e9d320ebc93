namespace KvmPS.Management.Vmm;

/// <summary>Base of every failure talking to a kvmps-vmm control socket. Names the socket.</summary>
public class VmmException : Exception
{
    public VmmException(string message, string socketPath, Exception? inner = null) : base(message, inner) => SocketPath = socketPath;

    public string SocketPath { get; }
}

/// <summary>No VMM is listening: the socket file is missing, or the connection is refused or closed.</summary>
public sealed class VmmNotRunningException : VmmException
{
    public VmmNotRunningException(string socketPath, string reason, Exception? inner = null)
        : base($"No kvmps-vmm is running on '{socketPath}': {reason}", socketPath, inner) => Reason = reason;

    public string Reason { get; }
}

/// <summary>The VMM answered a request with <c>ok: false</c>.</summary>
public sealed class VmmRequestException : VmmException
{
    public VmmRequestException(string code, string message, string socketPath, string request)
        : base($"kvmps-vmm on '{socketPath}' refused '{request}': {code}: {message}", socketPath)
    {
        Code = code;
        VmmMessage = message;
        Request = request;
    }

    /// <summary>
    /// <c>MalformedRequest</c>, <c>UnknownRequest</c>, <c>InvalidArgument</c>, <c>InvalidState</c>, <c>Timeout</c>, <c>InternalError</c>;
    /// <c>Busy</c> (every connection slot of the VMM is carrying out a request: it is there but cannot answer now) and
    /// <c>PermissionDenied</c> (this user may not use the socket) come before any request, at connect.
    /// </summary>
    public string Code { get; }

    /// <summary>The VMM's own message (without the socket/request prefix of <see cref="Exception.Message"/>).</summary>
    public string VmmMessage { get; }

    public string Request { get; }
}

/// <summary>Connecting or waiting for a reply took longer than allowed.</summary>
public sealed class VmmTimeoutException : VmmException
{
    public VmmTimeoutException(string socketPath, string operation, TimeSpan timeout)
        : base($"kvmps-vmm on '{socketPath}' did not complete {operation} within {timeout.TotalMilliseconds:0} ms", socketPath)
    {
        Operation = operation;
        Timeout = timeout;
    }

    public string Operation { get; }
    public TimeSpan Timeout { get; }
}

/// <summary>The VMM sent something that is not a valid reply (not JSON, wrong shape, wrong id).</summary>
public sealed class VmmProtocolException : VmmException
{
    public VmmProtocolException(string socketPath, string problem, Exception? inner = null)
        : base($"kvmps-vmm on '{socketPath}' sent an invalid reply: {problem}", socketPath, inner) { }
}
