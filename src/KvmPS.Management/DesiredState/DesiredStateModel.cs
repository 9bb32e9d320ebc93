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
