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
}
