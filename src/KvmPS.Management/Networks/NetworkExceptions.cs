namespace KvmPS.Management.Networks;

/// <summary>Base of every virtual network failure; names the network.</summary>
public class NetworkException : Exception
{
    public NetworkException(string networkName, string message, Exception? inner = null) : base(message, inner) => NetworkName = networkName;

    public string NetworkName { get; }
}

/// <summary>No network of that name exists.</summary>
public sealed class NetworkNotFoundException(string networkName, string storeRoot)
    : NetworkException(networkName, $"Network '{networkName}' does not exist in the store at '{storeRoot}' (Get-KvmNetwork / kvmps net list shows the networks)");

/// <summary>A network of that name exists already.</summary>
public sealed class NetworkAlreadyExistsException(string networkName)
    : NetworkException(networkName, $"Network '{networkName}' already exists (Set-KvmNetwork / kvmps net set changes its settings)");

/// <summary>A setting is refused; <see cref="Property"/> says which (Name, BridgeName, Subnet, Gateway, DhcpRangeStart, ...).</summary>
public sealed class NetworkSettingException : NetworkException
{
    public NetworkSettingException(string networkName, string property, string value, string reason, Exception? inner = null)
        : base(networkName, $"Network '{networkName}': {property} '{value}' {reason}", inner)
    {
        Property = property;
        Value = value;
        Reason = reason;
    }

    public string Property { get; }
    public string Value { get; }
    public string Reason { get; }
}

/// <summary>A network cannot be removed (VM definitions use it) or stopped (running VMs use it); the VMs are named.</summary>
public sealed class NetworkInUseException : NetworkException
{
    public NetworkInUseException(string networkName, IReadOnlyList<string> vmNames, string message) : base(networkName, message) => VmNames = vmNames;

    public IReadOnlyList<string> VmNames { get; }
}

/// <summary>An <c>ip</c>, <c>nft</c>, <c>sysctl</c> or <c>dnsmasq</c> command failed; names the command and quotes its stderr.</summary>
public sealed class NetworkHostException : NetworkException
{
    public NetworkHostException(string networkName, string command, string stderr, Exception? inner = null)
        : base(networkName, $"Network '{networkName}': '{command}' failed: {(string.IsNullOrWhiteSpace(stderr) ? "(no error output)" : stderr.Trim())}", inner)
    {
        Command = command;
        StandardError = stderr;
    }

    public string Command { get; }
    public string StandardError { get; }
}
