using KvmPS.Management.Definitions;
using KvmPS.Management.Manifests;

namespace KvmPS.Management.DesiredState;

/// <summary>Whether a VM named in a manifest should exist.</summary>
public enum VmEnsure
{
    Present,
    Absent,
}

/// <summary>The power state a manifest asks for (<c>State = 'Running'</c>).</summary>
public enum DesiredPowerState
{
    Running,
    Off,
    Paused,
}

/// <summary>
/// One VM as a manifest (or a DSC instance) declares it. For <see cref="VmEnsure.Present"/>,
/// <see cref="Definition"/> is the complete definition the VM is created from, and
/// <see cref="ManagedProperties"/> the schema properties the manifest states (directly or through
/// <c>Defaults</c>): only those are compared with and enforced on an existing VM.
/// </summary>
public sealed record DesiredVm
{
    public required string Name { get; init; }
    public VmEnsure Ensure { get; init; } = VmEnsure.Present;

    /// <summary>Null: the manifest does not manage the power state.</summary>
    public DesiredPowerState? State { get; init; }

    /// <summary>Restart a running VM when a change can only take effect at the next start.</summary>
    public bool RestartIfNeeded { get; init; }

    /// <summary>The definition for Present VMs; null for Absent ones.</summary>
    public VmDefinition? Definition { get; init; }

    /// <summary>Schema property names (<see cref="DefinitionOverlay.Properties"/>) this entry manages.</summary>
    public IReadOnlySet<string> ManagedProperties { get; init; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>Where the VM's entry starts (its hashtable), for messages.</summary>
    public SourcePosition Position { get; init; }
}

/// <summary>Everything a set of manifest files asks of the host: VMs in file order, then entry order.</summary>
public sealed record DesiredHostState(IReadOnlyList<string> Files, IReadOnlyList<DesiredVm> Vms)
{
    public DesiredVm? Find(string name) => Vms.FirstOrDefault(v => string.Equals(v.Name, name, StringComparison.Ordinal));

    /// <summary>The manifests' <c>StoragePools</c> entries (docs/pools.md), planned before the VMs.</summary>
    public IReadOnlyList<DesiredStoragePool> StoragePools { get; init; } = [];

    /// <summary>The manifests' <c>Networks</c> entries (docs/networks.md), created and started before the VMs.</summary>
    public IReadOnlyList<DesiredNetwork> Networks { get; init; } = [];

    /// <summary>The manifests' <c>HostSriov</c> VF counts per physical function (docs/passthrough-host.md), set before the VMs start.</summary>
    public IReadOnlyList<DesiredSriovVfCount> HostSriov { get; init; } = [];
}

/// <summary>
/// One virtual network as a manifest declares it:
/// <c>@{ Name = 'lab'; Mode = 'Nat'; Bridge = 'kvbr-lab'; Subnet = '10.77.0.0/24'; DhcpRange = @('10.77.0.100', '10.77.0.200'); Autostart = $true }</c>.
/// A Present network is defined and started (Active). The settings left out (null) are not managed: the network keeps
/// what it has, and a new one gets the defaults. Absent networks are removed after the VMs' steps.
/// </summary>
public sealed record DesiredNetwork
{
    public required string Name { get; init; }
    public VmEnsure Ensure { get; init; } = VmEnsure.Present;
    public Networks.NetworkMode Mode { get; init; } = Networks.NetworkMode.Nat;

    /// <summary>The Linux bridge; required for Present networks, null for Absent ones.</summary>
    public string? Bridge { get; init; }

    public string? Subnet { get; init; }
    public System.Net.IPAddress? Gateway { get; init; }
    public System.Net.IPAddress? DhcpRangeStart { get; init; }
    public System.Net.IPAddress? DhcpRangeEnd { get; init; }
    public IReadOnlyList<Networks.DhcpStaticLease>? StaticLeases { get; init; }
    public string? DnsDomain { get; init; }
    public int? Mtu { get; init; }
    public bool? Autostart { get; init; }
    public SourcePosition Position { get; init; }

    /// <summary>The definition a new network is created from (unstated settings: the manager's defaults).</summary>
    public Networks.NetworkDefinition ToDefinition() =>
        new(Name, Mode, Bridge ?? throw new InvalidOperationException($"network '{Name}' has no bridge"), Subnet, Gateway, DhcpRangeStart, DhcpRangeEnd,
            StaticLeases, DnsDomain, Mtu, Autostart ?? false);
}

/// <summary>
/// One storage pool as a manifest declares it: <c>@{ Name = 'lab'; Path = '/srv/lab'; Autostart = $true; Ensure = 'Present' }</c>.
/// A missing folder is created (0700) when the pool is applied. Absent pools are forgotten after the VMs' steps (their folders stay).
/// </summary>
public sealed record DesiredStoragePool
{
    public required string Name { get; init; }
    public VmEnsure Ensure { get; init; } = VmEnsure.Present;

    /// <summary>Absolute folder (a relative one in the manifest is taken from the manifest's folder); null for Absent.</summary>
    public string? Path { get; init; }

    /// <summary>Null: the manifest does not manage autostart (a new pool gets false).</summary>
    public bool? Autostart { get; init; }

    public SourcePosition Position { get; init; }
}
