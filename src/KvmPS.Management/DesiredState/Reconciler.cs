using KvmPS.Management.Lifecycle;
using KvmPS.Management.Networks;
using KvmPS.Management.Store;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// Makes the host match a <see cref="DesiredHostState"/>: <see cref="Get"/> (what is there), <see cref="Test"/>
/// (is it as asked; which properties drift), <see cref="Plan"/> (the ordered steps, see
/// <see cref="ReconcilePlanner"/>; <c>-WhatIf</c> shows this and runs nothing) and <see cref="Set"/> (runs the
/// plan). Every step is one <see cref="VmManager"/> call: the reconciler has no lifecycle logic of its own.
/// </summary>
public sealed class Reconciler
{
    /// <param name="networks">The network calls (tests pass a fake); by default the <see cref="Networks.NetworkManager"/> over the manager's store.</param>
    /// <param name="sriov">SR-IOV through sysfs (tests pass one over a fake tree); by default the host's.</param>
    public Reconciler(VmManager manager, INetworkOperations? networks = null, HostDevices.HostSriov? sriov = null)
    {
        Manager = manager ?? throw new ArgumentNullException(nameof(manager));
        Networks = networks ?? new NetworkManagerOperations(manager.Store);
        _sriov = sriov;
    }

    private HostDevices.HostSriov? _sriov;

    /// <summary>Used only when a manifest declares HostSriov.</summary>
    public HostDevices.HostSriov Sriov => _sriov ??= new HostDevices.HostSriov();

    public VmManager Manager { get; }

    /// <summary>Used only when a manifest declares networks or a VM's adapter names one.</summary>
    public INetworkOperations Networks { get; }

    /// <summary>The VMs the manifest names with their live state and drift, plus the store's other VMs.</summary>
    public DesiredHostStatus Get(DesiredHostState desired)
    {
        ArgumentNullException.ThrowIfNull(desired);
        var all = Manager.List().ToDictionary(v => v.Name, StringComparer.Ordinal);
        var pools = PoolSnapshot();
        var poolStatus = desired.StoragePools.Select(p =>
        {
            pools.TryGetValue(p.Name, out var info);
            return new DesiredStoragePoolStatus(p, info, StoragePoolPlanner.Plan([p], pools).Drifts);
        }).ToList();
        var vms = desired.Vms.Select(vm =>
        {
            all.TryGetValue(vm.Name, out var info);
            return new DesiredVmStatus(vm, info, ReconcilePlanner.DriftOf(vm, info is null ? null : ActualVm.From(info)));
        }).ToList();
        var networks = desired.Networks.Count == 0 ? new Dictionary<string, NetworkInfo>() : NetworkSnapshot();
        var networkStatus = desired.Networks.Select(n =>
        {
            networks.TryGetValue(n.Name, out var info);
            return new DesiredNetworkStatus(n, info, NetworkPlanner.Plan([n], networks).Drifts);
        }).ToList();
        var named = desired.Vms.Select(v => v.Name).ToHashSet(StringComparer.Ordinal);
        var sriovStatus = desired.HostSriov.Select(s =>
        {
            var device = Sriov.Host.TryRead(s.PhysicalFunction);
            return new DesiredSriovStatus(s, device, SriovPlanner.DriftOf(s, device));
        }).ToList();
        return new DesiredHostStatus(vms, all.Values.Where(v => !named.Contains(v.Name)).OrderBy(v => v.Name, StringComparer.Ordinal).ToList())
        {
            StoragePools = poolStatus,
            Networks = networkStatus,
            HostSriov = sriovStatus,
        };
    }

    /// <summary>The drift of every VM the manifest names; empty when the host is in the desired state.</summary>
    public IReadOnlyList<Drift> Test(DesiredHostState desired) => Plan(desired).Drifts;

    /// <summary>The steps <see cref="Set"/> would run now.</summary>
    public ReconcilePlan Plan(DesiredHostState desired)
    {
        ArgumentNullException.ThrowIfNull(desired);
        var actual = Snapshot(desired);
        var plan = ReconcilePlanner.Plan(desired, actual);
        CheckPaths(desired, actual);
        CheckNetworks(desired, actual);
        if (desired.StoragePools.Count == 0 && desired.Networks.Count == 0 && desired.HostSriov.Count == 0)
            return plan;
        // Pools and networks first (VMs use them), the ones to remove last (after the VMs that used them are gone).
        var (before, after, poolDrifts) = desired.StoragePools.Count == 0
            ? ([], [], [])
            : StoragePoolPlanner.Plan(desired.StoragePools, PoolSnapshot());
        var removed = desired.Vms.Where(v => v.Ensure == VmEnsure.Absent).Select(v => v.Name).ToHashSet(StringComparer.Ordinal);
        var (netBefore, netAfter, netDrifts, netWarnings) = desired.Networks.Count == 0
            ? ([], [], [], [])
            : NetworkPlanner.Plan(desired.Networks, NetworkSnapshot(), removed);
        // SR-IOV VF counts once the VMs the plan stops are down, before any VM is changed or started (docs/passthrough-host.md).
        var (sriovSteps, sriovDrifts, sriovWarnings) = desired.HostSriov.Count == 0 ? ([], [], []) : SriovPlanner.Plan(desired.HostSriov, Sriov);
        var stops = plan.Actions.Take(plan.StopStepCount);
        var rest = plan.Actions.Skip(plan.StopStepCount);
        return new ReconcilePlan([.. before, .. netBefore, .. stops, .. sriovSteps, .. rest, .. netAfter, .. after],
            [.. poolDrifts, .. netDrifts, .. sriovDrifts, .. plan.Drifts], [.. plan.Warnings, .. netWarnings, .. sriovWarnings]);
    }

    /// <summary>Every network there is, by name.</summary>
    private Dictionary<string, NetworkInfo> NetworkSnapshot() => Networks.List().ToDictionary(n => n.Name, StringComparer.Ordinal);

    /// <summary>
    /// Refuses, in the plan already, a VM adapter on a network that neither exists nor is declared Present in the
    /// manifest, or on one the manifest removes: applying would create a VM that cannot start.
    /// </summary>
    private void CheckNetworks(DesiredHostState desired, IReadOnlyDictionary<string, ActualVm> actual)
    {
        foreach (var vm in desired.Vms)
        {
            if (vm.Ensure == VmEnsure.Absent || vm.Definition is null)
                continue;
            var target = actual.TryGetValue(vm.Name, out var current) ? ReconcilePlanner.TargetDefinition(vm, current.Definition) : vm.Definition;
            for (var i = 0; i < target.NetworkAdapters.Count; i++)
            {
                if (target.NetworkAdapters[i].NetworkName is not { } network)
                    continue;
                var declared = desired.Networks.FirstOrDefault(n => n.Name == network);
                if (declared is { Ensure: VmEnsure.Present })
                    continue;
                if (declared is not null)
                    throw new DesiredStateException(vm.Position, vm.Name, $"NetworkAdapters[{i}].Network",
                        $"network '{network}' is declared with Ensure = 'Absent' in the manifest (at {declared.Position}); a VM on it cannot be Present");
                if (Networks.TryGet(network) is null)
                    throw new DesiredStateException(vm.Position, vm.Name, $"NetworkAdapters[{i}].Network",
                        $"network '{network}' does not exist (declare it in the manifest's Networks, or create it: New-KvmNetwork)");
            }
        }
    }

    /// <summary>Every pool there is, by name.</summary>
    private Dictionary<string, Pools.StoragePoolInfo> PoolSnapshot() =>
        new Pools.StoragePoolManager(Manager.Store).List().ToDictionary(p => p.Name, StringComparer.Ordinal);

    /// <summary>True when a path check failed only because the manifest's own pools are not made yet.</summary>
    private static bool PendingPool(DesiredHostState desired, Exception e) => e switch
    {
        Pools.StoragePoolNotFoundException missing => desired.StoragePools.Any(p => p.Ensure == VmEnsure.Present && p.Name == missing.PoolName),
        PathNotAllowedException outside => desired.StoragePools.Any(p => p.Ensure == VmEnsure.Present && p.Path is { } folder
            && (outside.Path == folder || outside.Path.StartsWith(folder + "/", StringComparison.Ordinal))),
        _ => false,
    };

    /// <summary>
    /// Refuses, in the plan already, a disk, backing image, kernel, initrd or firmware path that creating or updating the
    /// VM would refuse (outside the store and every allowed folder, or a relative disk path leaving the disk folder):
    /// <c>plan</c> must not promise what <c>apply</c> cannot do.
    /// </summary>
    private void CheckPaths(DesiredHostState desired, IReadOnlyDictionary<string, ActualVm> actual)
    {
        foreach (var vm in desired.Vms)
        {
            if (vm.Ensure == VmEnsure.Absent || vm.Definition is null)
                continue;
            var target = actual.TryGetValue(vm.Name, out var current) ? ReconcilePlanner.TargetDefinition(vm, current.Definition) : vm.Definition;
            try
            {
                Manager.Store.CheckPaths(target);
            }
            catch (Exception e) when (e is Pools.StoragePoolNotFoundException or PathNotAllowedException && PendingPool(desired, e))
            {
            }
            catch (Pools.StoragePoolNotFoundException e)
            {
                throw new DesiredStateException(vm.Position, vm.Name, "Disks", e.Message + " (declare it in the manifest's StoragePools, or create it: New-KvmStoragePool)", e);
            }
            catch (PathNotAllowedException e)
            {
                throw new DesiredStateException(vm.Position, vm.Name, e.Property, e.Message, e);
            }
            catch (StorePathEscapeException e)
            {
                throw new DesiredStateException(vm.Position, vm.Name, "Disks", e.Message, e);
            }
        }
    }

    /// <summary>
    /// Plans against the host as it is now and runs the plan in order, reporting each step before and after it
    /// runs. Stops at the first failing step (later steps are reported <see cref="ReconcileActionStatus.NotRun"/>);
    /// each step is one atomic <see cref="VmManager"/> call, so the store stays consistent and running Set again
    /// continues where this one stopped. Running it on a host in the desired state does nothing.
    /// </summary>
    public ReconcileResult Set(DesiredHostState desired, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var plan = Plan(desired);
        var results = new List<ReconcileActionResult>();
        var failed = false;
        for (var i = 0; i < plan.Actions.Count; i++)
        {
            var action = plan.Actions[i];
            if (failed || cancellationToken.IsCancellationRequested)
            {
                results.Add(new ReconcileActionResult(action, ReconcileActionStatus.NotRun,
                    failed ? "not run: an earlier step failed" : "not run: cancelled"));
                failed = true;
                continue;
            }
            progress?.Report(StepProgress(action, ProgressStage.StepStarted, i, plan.Actions.Count, action.Description));
            ReconcileActionResult result;
            try
            {
                result = Run(desired, action);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                result = new ReconcileActionResult(action, ReconcileActionStatus.Failed, e.Message, e);
                failed = true;
            }
            results.Add(result);
            progress?.Report(StepProgress(action, failed ? ProgressStage.StepFailed : ProgressStage.StepDone, i, plan.Actions.Count, result.Message)
                with { Completed = failed || i == plan.Actions.Count - 1 });
        }
        return new ReconcileResult(plan, results);
    }

    /// <summary>Step <paramref name="index"/> (0-based) of <paramref name="count"/>: a started step is the steps before it done, a finished one includes it.</summary>
    private static OperationProgress StepProgress(ReconcileAction action, ProgressStage stage, int index, int count, string status) =>
        new("Applying the desired state", status, 100 * (index + (stage == ProgressStage.StepStarted ? 0 : 1)) / count)
        {
            Stage = stage,
            VmName = action.VmName,
            Step = index + 1,
            StepCount = count,
        };

    private ReconcileActionResult Run(DesiredHostState desired, ReconcileAction action)
    {
        var name = action.VmName;
        switch (action.Kind)
        {
            case ReconcileActionKind.Create:
            {
                var info = Manager.New(action.Definition!);
                return Done(action, $"VM '{name}' created ({info.State})");
            }
            case ReconcileActionKind.Update:
            case ReconcileActionKind.UpdateLive:
            case ReconcileActionKind.UpdateNeedsRestart:
            {
                var vm = desired.Find(name)!;
                // Re-applied to the definition as it is under the store lock, not the one planned from.
                var change = Manager.Update(name, current => ReconcilePlanner.TargetDefinition(vm, current));
                var how = change.Changes.Count == 0
                    ? "already up to date"
                    : string.Join(", ", change.Changes.Select(c => $"{c.Property} {c.OldValue} -> {c.NewValue} ({c.Application})"));
                return new ReconcileActionResult(action, ReconcileActionStatus.Done, $"VM '{name}' updated: {how}", null, change);
            }
            case ReconcileActionKind.Stop:
            {
                // Off wanted for a Saved VM: planned as discarding its saved state (a graceful stop has nothing to stop).
                // Never by signal: a VMM that stopped answering since the plan was made is left alone (the step fails saying so).
                var stop = Manager.Stop(name, null, force: Manager.Get(name).State == VmState.Saved, signalIfUnreachable: false);
                return Done(action, stop.Message);
            }
            case ReconcileActionKind.Start:
            {
                var info = Manager.Start(name);
                return Done(action, info.State is VmState.Running or VmState.Paused
                    ? $"VM '{name}' is {info.State} (pid {info.Pid})"
                    : $"VM '{name}' is {info.State} right after starting" + (info.StateReason is null ? "" : $": {info.StateReason}"));
            }
            case ReconcileActionKind.Suspend:
                return Done(action, $"VM '{name}' is {Manager.Suspend(name).State}");
            case ReconcileActionKind.Resume:
                return Done(action, $"VM '{name}' is {Manager.Resume(name).State}");
            case ReconcileActionKind.CreateStoragePool:
            {
                var pool = desired.StoragePools.First(p => p.Name == name);
                var info = new Pools.StoragePoolManager(Manager.Store).Create(name, pool.Path!, pool.Autostart ?? false, createPath: true);
                return Done(action, $"Storage pool '{name}' created on '{info.Path}'");
            }
            case ReconcileActionKind.UpdateStoragePool:
            {
                var pool = desired.StoragePools.First(p => p.Name == name);
                var pools = new Pools.StoragePoolManager(Manager.Store);
                pools.Set(name, pool.Path, pool.Autostart, createPath: true);
                pools.EnsureFolder(name);
                var info = pools.Get(name);
                return Done(action, $"Storage pool '{name}' updated (Path '{info.Path}', Autostart {info.Autostart})");
            }
            case ReconcileActionKind.CreateStoragePoolFolder:
                new Pools.StoragePoolManager(Manager.Store).EnsureFolder(name);
                return Done(action, $"Folder of storage pool '{name}' re-created");
            case ReconcileActionKind.RemoveStoragePool:
                new Pools.StoragePoolManager(Manager.Store).Remove(name);
                return Done(action, $"Storage pool '{name}' removed (its folder and volumes stay)");
            case ReconcileActionKind.CreateNetwork:
            {
                var info = Networks.Create(desired.Networks.First(n => n.Name == name).ToDefinition());
                return Done(action, $"Network '{name}' created ({info.State})");
            }
            case ReconcileActionKind.UpdateNetwork:
            {
                // Re-applied to the network as it is now, not the one planned from.
                var current = Networks.TryGet(name) ?? throw new InvalidOperationException($"Network '{name}' no longer exists; run the plan again.");
                var info = Networks.Set(NetworkPlanner.TargetDefinition(desired.Networks.First(n => n.Name == name), current.Definition));
                return Done(action, $"Network '{name}' updated ({info.State})");
            }
            case ReconcileActionKind.StartNetwork:
            {
                var info = Networks.Start(name);
                // VMs planned after this step need the network whole: stop here rather than start them on a broken one.
                if (info.State != NetworkState.Active)
                    throw new InvalidOperationException($"Network '{name}' is {info.State} after starting" + (info.Problems.Count > 0 ? ": " + string.Join("; ", info.Problems) : ""));
                return Done(action, $"Network '{name}' is Active on bridge '{info.Definition.BridgeName}'" + (info.DnsmasqProcessId is { } pid ? $" (dnsmasq pid {pid})" : ""));
            }
            case ReconcileActionKind.RemoveNetwork:
                Networks.Remove(name);
                return Done(action, $"Network '{name}' stopped and removed");
            case ReconcileActionKind.SetSriovVfCount:
            {
                var entry = desired.HostSriov.First(e => e.PhysicalFunction.ToString() == name);
                return Done(action, Sriov.SetVfCount(entry.PhysicalFunction, entry.VfCount)
                    ? $"Physical function {name} has {entry.VfCount} VFs"
                    : $"Physical function {name} already had {entry.VfCount} VFs");
            }
            case ReconcileActionKind.Remove:
            {
                var removed = Manager.Remove(name, force: true, deleteDisks: false);
                return Done(action, $"VM '{name}' removed" + (removed.RetainedDisksDirectory is { } kept ? $" (disks kept in {kept})" : ""));
            }
            default:
                throw new InvalidOperationException($"unknown action {action.Kind}");
        }
    }

    private static ReconcileActionResult Done(ReconcileAction action, string message) => new(action, ReconcileActionStatus.Done, message);

    private Dictionary<string, ActualVm> Snapshot(DesiredHostState desired)
    {
        var actual = new Dictionary<string, ActualVm>(StringComparer.Ordinal);
        foreach (var vm in desired.Vms)
            if (Manager.TryGet(vm.Name) is { } info)
                actual[vm.Name] = ActualVm.From(info);
        return actual;
    }
}
