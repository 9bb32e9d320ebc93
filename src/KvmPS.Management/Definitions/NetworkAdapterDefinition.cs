namespace KvmPS.Management.Definitions;

/// <summary>
/// A virtio-net adapter attached to an existing tap device (<see cref="TapName"/>) or to a bridge
/// (<see cref="BridgeName"/>, for which the VMM creates a tap) — exactly one of the two.
/// </summary>
public sealed record NetworkAdapterDefinition(string? TapName, string? BridgeName, MacAddress MacAddress, string? NetworkName = null)
{
    /// <summary>Linux IFNAMSIZ is 16 including the terminator.</summary>
    public const int MaximumInterfaceNameLength = 15;

    public override string ToString() => BridgeName is not null ? $"{MacAddress} on bridge {BridgeName}" : $"{MacAddress} on tap {TapName}";

    /// <summary>
    /// The MAC an adapter at position <paramref name="index"/> of VM <paramref name="vmName"/> gets when none is
    /// given: the stable address for "vmName/index", or for the next index whose address is not
    /// <paramref name="taken"/>. The one rule for manifests, cmdlets and the CLI, so an adapter added by a
    /// cmdlet gets the same MAC a manifest listing it at that position would give it (no drift).
    /// </summary>
    public static MacAddress GenerateMac(string vmName, int index, IEnumerable<MacAddress> taken)
    {
        ArgumentNullException.ThrowIfNull(vmName);
        var used = taken.ToHashSet();
        for (var i = index; ; i++)
        {
            var mac = MacAddress.GenerateLocallyAdministered($"{vmName}/{i}");
            if (!used.Contains(mac))
                return mac;
        }
    }
}
