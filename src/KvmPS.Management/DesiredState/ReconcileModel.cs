using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Management.DesiredState;

/// <summary>What the reconciler does to one VM in one step. Every kind is one <see cref="VmManager"/> call.</summary>
public enum ReconcileActionKind
{
    /// <summary>Store a new VM (<see cref="VmManager.New"/>); it is not started by this step.</summary>
    Create,

    /// <summary>Change the stored definition of a VM that is not running (<see cref="VmManager.Update"/>).</summary>
    Update,

    /// <summary>Change a running VM where every change takes effect without a restart (Notes, Autostart, live-applicable settings).</summary>
    UpdateLive,

    /// <summary>Change a running VM; some change only takes effect at its next start and RestartIfNeeded is off.</summary>
    UpdateNeedsRestart,

    /// <summary>Stop the VM (<see cref="VmManager.Stop"/>: ACPI power button, then forced).</summary>
    Stop,

    /// <summary>Start the VM and wait until it runs (<see cref="VmManager.Start"/>).</summary>
    Start,

    /// <summary>Pause every vCPU (<see cref="VmManager.Suspend"/>).</summary>
    Suspend,

    /// <summary>Resume a paused VM (<see cref="VmManager.Resume"/>).</summary>
    Resume,

    /// <summary>Remove the VM from the store (<see cref="VmManager.Remove"/>); its disk folder is kept in retained-disks.</summary>
    Remove,

    /// <summary>Define a storage pool, creating its folder if missing (<see cref="Pools.StoragePoolManager.Create"/>). <see cref="ReconcileAction.VmName"/> holds the pool name.</summary>
    CreateStoragePool,

    /// <summary>Change a pool's folder or autostart (<see cref="Pools.StoragePoolManager.Set"/>).</summary>
    UpdateStoragePool,

    /// <summary>Re-create a pool's missing folder (<see cref="Pools.StoragePoolManager.EnsureFolder"/>).</summary>
    CreateStoragePoolFolder,

    /// <summary>Forget a pool (<see cref="Pools.StoragePoolManager.Remove"/>); its folder and volumes stay.</summary>
    RemoveStoragePool,

    /// <summary>Define a network (<see cref="Networks.NetworkManager.Create"/>); it is started by a <see cref="StartNetwork"/> step. <see cref="ReconcileAction.VmName"/> holds the network name.</summary>
    CreateNetwork,

    /// <summary>Replace a network's settings (<see cref="Networks.NetworkManager.Set"/>; a running network is restarted).</summary>
    UpdateNetwork,

    /// <summary>Start an Inactive network or repair a Degraded one (<see cref="Networks.NetworkManager.Start"/>).</summary>
    StartNetwork,

    /// <summary>Stop and forget a network (<see cref="Networks.NetworkManager.Remove"/>), after the VMs that used it are removed.</summary>
    RemoveNetwork,

    /// <summary>
    /// Set an SR-IOV physical function's VF count (<see cref="HostDevices.HostSriov.SetVfCount"/>), after the VMs the
    /// plan stops and before the ones it starts. <see cref="ReconcileAction.VmName"/> holds the PF's PCI address.
    /// </summary>
    SetSriovVfCount,
}

/// <summary>One property of one VM that differs from the manifest. Ensure and State use the manifest's words.</summary>
/// <param name="Expected">The value the manifest asks for (sizes in bytes, as the schema stores them).</param>
/// <param name="Actual">The value the host has now; null when the VM does not exist.</param>
public sealed record Drift(string VmName, string Property, string? Expected, string? Actual)
{
    public override string ToString() => $"{VmName}.{Property}: expected {Expected ?? "(none)"}, actual {Actual ?? "(none)"}";
}

/// <summary>One planned step.</summary>
/// <param name="Description">A human sentence, e.g. "Start VM 'web1'" or "Update VM 'db' (VcpuCount 1 -> 2)".</param>
/// <param name="Changes">For the update kinds: the properties that change.</param>
/// <param name="Definition">For Create: the definition to store.</param>
/// <param name="Reason">Why the step is needed, e.g. "State is Off, the manifest wants Running".</param>
public sealed record ReconcileAction(
    ReconcileActionKind Kind,
    string VmName,
    string Description,
    string Reason,
    IReadOnlyList<Drift> Changes,
    VmDefinition? Definition = null)
{
    public override string ToString() => Description;
}

/// <summary>The ordered steps that bring the host to the manifest, the drift they fix, and warnings.</summary>
public sealed record ReconcilePlan(IReadOnlyList<ReconcileAction> Actions, IReadOnlyList<Drift> Drifts, IReadOnlyList<string> Warnings)
{
    /// <summary>
    /// How many of the leading <see cref="Actions"/> remove or stop VMs (<see cref="ReconcilePlanner"/>'s first two
    /// phases; 0 in the reconciler's combined plan): host resources those VMs held (SR-IOV VFs) can change after them.
    /// </summary>
    public int StopStepCount { get; init; }

    public bool IsEmpty => Actions.Count == 0;
    public bool InDesiredState => Drifts.Count == 0;
}

/// <summary>The host's view of one VM, as the planner needs it.</summary>
/// <param name="IsActive">A kvmps-vmm process exists (see <see cref="VmInfo.IsActive"/>).</param>
/// <param name="Limits">What the running VMM changes without a restart; null when no VMM answers.</param>
public sealed record ActualVm(string Name, VmDefinition Definition, VmState State, bool IsActive, LiveLimits? Limits = null, string? StateReason = null)
{
    public static ActualVm From(VmInfo info) => new(info.Name, info.Definition, info.State, info.IsActive, LiveLimits.From(info.Live), info.StateReason);
}

public enum ReconcileActionStatus
{
    Done,
    Failed,

    /// <summary>Not attempted: an earlier step failed.</summary>
    NotRun,
}

/// <summary>What happened to one planned step.</summary>
/// <param name="Message">What was done, e.g. "VM 'web1' is Running (pid 1234)" or the failure message.</param>
/// <param name="Change">For the update kinds: how each change took effect (Stored, AppliedLive, RestartNeeded).</param>
public sealed record ReconcileActionResult(ReconcileAction Action, ReconcileActionStatus Status, string Message, Exception? Error = null, ChangeResult? Change = null);

/// <summary>Outcome of <see cref="Reconciler.Set"/>.</summary>
public sealed record ReconcileResult(ReconcilePlan Plan, IReadOnlyList<ReconcileActionResult> Results)
{
    public bool Succeeded => Results.All(r => r.Status == ReconcileActionStatus.Done);
    public ReconcileActionResult? Failure => Results.FirstOrDefault(r => r.Status == ReconcileActionStatus.Failed);
    public bool Changed => Results.Any(r => r.Status == ReconcileActionStatus.Done);
}

/// <summary>One VM named in a manifest: what is asked and what is there.</summary>
/// <param name="Actual">Null when the VM does not exist.</param>
public sealed record DesiredVmStatus(DesiredVm Desired, VmInfo? Actual, IReadOnlyList<Drift> Drifts)
{
    public string Name => Desired.Name;
    public bool Exists => Actual is not null;
    public bool InDesiredState => Drifts.Count == 0;
}

/// <summary>Outcome of <see cref="Reconciler.Get"/>: the manifest's VMs, and the VMs in the store the manifest does not name.</summary>
public sealed record DesiredHostStatus(IReadOnlyList<DesiredVmStatus> Vms, IReadOnlyList<VmInfo> Unmanaged)
{
    public bool InDesiredState => Vms.All(v => v.InDesiredState) && StoragePools.All(p => p.InDesiredState) && Networks.All(n => n.InDesiredState)
                                  && HostSriov.All(s => s.InDesiredState);

    /// <summary>The manifest's SR-IOV VF counts with the physical function as it is and the drift.</summary>
    public IReadOnlyList<DesiredSriovStatus> HostSriov { get; init; } = [];

    /// <summary>The manifest's storage pools with what is there and their drift.</summary>
    public IReadOnlyList<DesiredStoragePoolStatus> StoragePools { get; init; } = [];

    /// <summary>The manifest's networks with what is there and their drift.</summary>
    public IReadOnlyList<DesiredNetworkStatus> Networks { get; init; } = [];
}

/// <summary>One network named in a manifest: what is asked and what is there (null: no such network).</summary>
public sealed record DesiredNetworkStatus(DesiredNetwork Desired, Networks.NetworkInfo? Actual, IReadOnlyList<Drift> Drifts)
{
    public string Name => Desired.Name;
    public bool InDesiredState => Drifts.Count == 0;
}

/// <summary>One storage pool named in a manifest: what is asked and what is there (null: no such pool).</summary>
public sealed record DesiredStoragePoolStatus(DesiredStoragePool Desired, Pools.StoragePoolInfo? Actual, IReadOnlyList<Drift> Drifts)
{
    public string Name => Desired.Name;
    public bool InDesiredState => Drifts.Count == 0;
}

/// <summary>One SR-IOV physical function named in a manifest's HostSriov: the VF count asked and the device (null: no such device).</summary>
public sealed record DesiredSriovStatus(DesiredSriovVfCount Desired, HostDevices.PciHostDevice? Actual, IReadOnlyList<Drift> Drifts)
{
    public string Name => Desired.PhysicalFunction.ToString();
    public bool InDesiredState => Drifts.Count == 0;
}
