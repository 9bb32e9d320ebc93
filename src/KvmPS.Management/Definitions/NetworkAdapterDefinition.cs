namespace KvmPS.Management.Definitions;

/// <summary>
/// A network adapter: a virtio-net adapter attached to an existing tap device (<see cref="TapName"/>), to a bridge
/// (<see cref="BridgeName"/>, for which the VMM creates a tap), or to a KvmPS network (<see cref="NetworkName"/>:
/// management resolves it to the network's bridge when the VM starts); or an SR-IOV virtual function of a host NIC
/// (<see cref="SriovVf"/>), passed through with kernel VFIO after its MAC (and <see cref="VlanId"/>) are set on the
/// physical function over netlink — exactly one of the four.
/// </summary>
public sealed record NetworkAdapterDefinition(string? TapName, string? BridgeName, MacAddress MacAddress, string? NetworkName = null,
    PciAddress? SriovVf = null, int? VlanId = null)
{
    /// <summary>Linux IFNAMSIZ is 16 including the terminator.</summary>
    public const int MaximumInterfaceNameLength = 15;

    /// <summary>802.1Q VLAN ids a VF can be put on (0 and 4095 are reserved).</summary>
    public const int MinimumVlanId = 1, MaximumVlanId = 4094;

    public override string ToString() =>
        SriovVf is { } vf ? $"{MacAddress} on SR-IOV VF {vf}" + (VlanId is { } vlan ? $" (VLAN {vlan})" : "")
        : NetworkName is not null ? $"{MacAddress} on network {NetworkName}"
        : BridgeName is not null ? $"{MacAddress} on bridge {BridgeName}"
        : $"{MacAddress} on tap {TapName}";

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
