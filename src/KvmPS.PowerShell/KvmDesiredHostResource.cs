using System.Management.Automation;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Manifests;

namespace KvmPS.PowerShell;

/// <summary>What a host resource is: the manifests' <c>StoragePools</c>, <c>Networks</c> and <c>HostSriov</c> entries.</summary>
public enum KvmHostResourceKind
{
    StoragePool,
    Network,

    /// <summary>An SR-IOV physical function's VF count (<c>HostSriov</c>); the name is its PCI address, the state its VF count.</summary>
    SriovPhysicalFunction,
}

/// <summary>
/// A storage pool or network named in a manifest, as Get-KvmDesiredState shows it beside the VMs: what the manifest
/// asks, the state it is in now, and each difference (a network whose dnsmasq died, a pool whose folder is gone).
/// </summary>
public sealed class KvmDesiredHostResource
{
    public KvmDesiredHostResource(DesiredNetworkStatus status)
        : this(KvmHostResourceKind.Network, NotNull(status).Name, status.Desired.Ensure, status.Actual?.State.ToString(), status.Drifts, status.Desired.Position, status)
    {
    }

    public KvmDesiredHostResource(DesiredStoragePoolStatus status)
        : this(KvmHostResourceKind.StoragePool, NotNull(status).Name, status.Desired.Ensure, status.Actual?.State.ToString(), status.Drifts, status.Desired.Position, status)
    {
    }

    public KvmDesiredHostResource(DesiredSriovStatus status)
        : this(KvmHostResourceKind.SriovPhysicalFunction, NotNull(status).Name, VmEnsure.Present,
            status.Actual is null ? null : $"{status.Actual.SriovNumVfs ?? 0} VFs", status.Drifts, status.Desired.Position, status)
    {
    }

    private static T NotNull<T>(T value) where T : class => value ?? throw new ArgumentNullException(nameof(value));

    private KvmDesiredHostResource(KvmHostResourceKind kind, string name, VmEnsure ensure, string? state, IReadOnlyList<Drift> drifts, SourcePosition position, object status)
    {
        Kind = kind;
        Name = name;
        Ensure = ensure;
        State = state;
        Drifts = drifts.ToArray();
        Manifest = position.ToString();
        Status = status;
    }

    public KvmHostResourceKind Kind { get; }
    public string Name { get; }
    public VmEnsure Ensure { get; }

    /// <summary>The resource's state now (a network's Active/Inactive/Degraded, a pool's); null when it does not exist.</summary>
    public string? State { get; }

    public bool Exists => State is not null;
    public bool InDesiredState => Drifts.Length == 0;

    /// <summary>Each difference, e.g. "lab.State: expected Active, actual Degraded".</summary>
    public Drift[] Drifts { get; }

    /// <summary>Where the entry is: file:line:column.</summary>
    public string Manifest { get; }

    /// <summary>The management record (<see cref="DesiredNetworkStatus"/>, <see cref="DesiredStoragePoolStatus"/> or <see cref="DesiredSriovStatus"/>).</summary>
    [Hidden]
    public object Status { get; }

    public override string ToString() => $"{Kind} {Name}";
}
