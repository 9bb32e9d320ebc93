namespace KvmPS.Management.Networks;

// Stand-in so lane net-front compiles against the contract (/work/wt/network-api.txt); net-core's real file replaces it.
public class NetworkException : Exception
{
    public NetworkException(string networkName, string message, Exception? inner = null) : base(message, inner) => NetworkName = networkName;
    public string NetworkName { get; }
}

public sealed class NetworkNotFoundException(string networkName, string message) : NetworkException(networkName, message);

public sealed class NetworkAlreadyExistsException(string networkName, string message) : NetworkException(networkName, message);

public sealed class NetworkSettingException(string networkName, string property, string value, string reason)
    : NetworkException(networkName, $"Network '{networkName}': {property} '{value}' {reason}")
{
    public string Property { get; } = property;
    public string Value { get; } = value;
    public string Reason { get; } = reason;
}

public sealed class NetworkInUseException(string networkName, IReadOnlyList<string> vmNames, string message) : NetworkException(networkName, message)
{
    public IReadOnlyList<string> VmNames { get; } = vmNames;
}

public sealed class NetworkHostException(string networkName, string command, string stderr)
    : NetworkException(networkName, $"Network '{networkName}': '{command}' failed: {stderr}")
{
    public string Command { get; } = command;
    public string Stderr { get; } = stderr;
}
