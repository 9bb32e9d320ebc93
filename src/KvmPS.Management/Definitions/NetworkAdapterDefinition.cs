namespace KvmPS.Management.Definitions;

/// <summary>
/// A virtio-net adapter attached to an existing tap device (<see cref="TapName"/>) or to a bridge
/// (<see cref="BridgeName"/>, for which the VMM creates a tap) — exactly one of the two.
/// </summary>
public sealed record NetworkAdapterDefinition(string? TapName, string? BridgeName, MacAddress MacAddress)
{
    /// <summary>Linux IFNAMSIZ is 16 including the terminator.</summary>
    public const int MaximumInterfaceNameLength = 15;
}
