using KvmPS.Management.HostDevices;
using KvmPS.Management.Definitions;
using KvmPS.Interop;
using KvmPS.Management.Snapshots;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>Timeouts of <see cref="VmManager"/>.</summary>
public sealed record VmManagerOptions
{
    /// <summary>How long <see cref="VmManager.Start"/> waits for the VMM to report Running.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a graceful stop waits for the guest to power off before the VMM forces it.</summary>
    public TimeSpan GracefulStopTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Connect and reply timeout for state queries.</summary>
    public TimeSpan QueryTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How long to wait for the VMM process to exit after it confirmed a stop, before killing it.</summary>
    public TimeSpan ExitTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long removing a disk or network adapter from a running VM waits for the guest to release it (ACPI eject)
    /// before it reports that the guest kept it.
    /// </summary>
    public TimeSpan DeviceRemoveTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How many VMs <see cref="VmManager.Autostart"/> starts at once.</summary>
    public int AutostartParallelism { get; init; } = 4;
}

/// <summary>
/// The VM lifecycle: the one API the cmdlets, the CLI and the reconciler call. Stateless apart from its
/// configuration (all state is in the store and the running VMMs), so any number of instances in any number
/// of processes can work on one store.
/// <para>
/// Concurrency: definition changes and process launch/teardown run under the store lock; waiting for a guest
/// to boot or power off never does. Errors are typed and name the VM: <see cref="VmNotFoundException"/>,
/// <see cref="VmStateException"/>, <see cref="ManagementValidationException"/>,
/// <see cref="VmFeatureNotSupportedException"/>, <see cref="VmmLaunchException"/>, and
/// <see cref="VmDefinitionException"/> for an invalid definition. Failed operations leave nothing half-done.
/// </para>
/// </summary>
public sealed partial class VmManager
{
    public VmManager(VmStore store, VmmProcessLauncher? launcher = null, IDiskImageCreator? diskImageCreator = null, VmManagerOptions? options = null)
    {
        Store = store ?? throw new ArgumentNullException(nameof(store));
        Launcher = launcher ?? new VmmProcessLauncher();
        DiskImageCreator = diskImageCreator;
        Options = options ?? new VmManagerOptions();
    }

    public VmStore Store { get; }
    public VmmProcessLauncher Launcher { get; }

    /// <summary>A manager over the default store with real image creation and disk snapshots (KvmPS.Storage): what front ends use.</summary>
    public static VmManager OpenDefault(VmStore? store = null) =>
        new(store ?? VmStore.Open(), diskImageCreator: new StorageDiskImageCreator()) { DiskSnapshots = new QcowDiskSnapshots() };

    /// <summary>Creates disk images for <see cref="New"/>; null means disks must already exist (see <see cref="IDiskImageCreator"/>).</summary>
    public IDiskImageCreator? DiskImageCreator { get; }

    public VmManagerOptions Options { get; }

    // ---- create / read -----------------------------------------------------------------------------

    /// <summary>
    /// Stores a new VM and creates its disk images (disks with <see cref="DiskDefinition.SizeBytes"/>). On any
    /// failure the VM and the images created so far are removed again. The VM is not started.
    /// </summary>
    public VmInfo New(VmDefinition definition, IProgress<OperationProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(definition);
        definition.Validate();
        var name = definition.Name;
        var toCreate = definition.Disks.Select((disk, index) => (disk, index)).Where(d => d.disk.SizeBytes is not null).ToList();
        if (toCreate.Count > 0 && DiskImageCreator is null)
            throw new ManagementValidationException(name, $"Disks[{toCreate[0].index}].SizeBytes",
                "creating disk images is not available yet (no IDiskImageCreator is configured); give existing images without SizeBytes");

        var activity = $"Creating VM '{name}'";
        progress?.Report(new OperationProgress(activity, "Writing the definition", 0) { VmName = name });
        Store.Create(definition);
        var created = new List<string>();
        try
        {
            for (var i = 0; i < toCreate.Count; i++)
            {
                var (disk, index) = toCreate[i];
                var path = Store.ResolveDiskPath(name, disk.Path);
                var backing = disk.BackingImagePath is null ? null : Store.ResolveDiskPath(name, disk.BackingImagePath);
                var percentBase = 100 * i / toCreate.Count;
                progress?.Report(new OperationProgress(activity, $"Creating disk image '{path}'", percentBase) { VmName = name });
                if (File.Exists(path))
                    throw new ManagementValidationException(name, $"Disks[{index}].Path", $"'{path}' already exists; remove SizeBytes to use an existing image");
                // The creator reports its own image's percentage; scale it into this VM's share.
                var diskProgress = progress is null ? null : new SynchronousProgress(p =>
                    progress.Report(new OperationProgress(activity, $"Creating disk image '{path}'", percentBase + Math.Clamp(p.PercentComplete, 0, 100) / toCreate.Count) { VmName = name }));
                created.Add(path);
                DiskImageCreator!.CreateImage(new DiskImageRequest(name, index, disk, path, backing), diskProgress);
            }
        }
        catch
        {
            // Images inside the VM's disk directory go with the VM; ones elsewhere are removed one by one
            // (only those this call set out to create: the creator refuses to overwrite existing files).
            var diskDirectory = Store.DiskDirectory(name) + Path.DirectorySeparatorChar;
            foreach (var path in created.Where(p => !p.StartsWith(diskDirectory, StringComparison.Ordinal)))
                TryDeleteFile(path);
            Store.Delete(name, DiskRetention.Delete);
            throw;
        }
        progress?.Report(new OperationProgress(activity, "Done", 100) { VmName = name, Completed = true });
        return Get(name);
    }

    /// <summary>The VM with its live state; throws <see cref="VmNotFoundException"/>.</summary>
    public VmInfo Get(string name) => ToInfo(Store.Get(name), Probe(name));

    public VmInfo? TryGet(string name)
    {
        var definition = Store.TryGet(name);
        return definition is null ? null : ToInfo(definition, Probe(name));
    }

    /// <summary>All VMs, by name.</summary>
    public IReadOnlyList<VmInfo> List()
    {
        var result = new List<VmInfo>();
        foreach (var name in Store.ListNames())
            if (TryGet(name) is { } info) // deleted meanwhile: skip
                result.Add(info);
        return result;
    }

    // ---- start / stop ------------------------------------------------------------------------------

    /// <summary>
    /// Starts the VM's kvmps-vmm and returns once it reports Running (or the guest already crashed or powered
    /// off during boot: then the returned state says so). A VM that is running, paused or starting →
    /// <see cref="VmStateException"/>; a crashed VM whose VMM is still up must be stopped first (or use
    /// <see cref="Restart"/>); one whose VMM died is simply started again. If the VMM exits with an error or
    /// does not come up within <paramref name="timeout"/>, throws <see cref="VmmLaunchException"/> with its
    /// exit status and output, and nothing is left running.
    /// </summary>
    public VmInfo Start(string name, TimeSpan? timeout = null, IProgress<OperationProgress>? progress = null)
    {
        var wait = timeout ?? Options.StartTimeout;
        VmDefinition definition;
        VmmProcess process;
        VmSavedState? saved = null;
        using (Store.Lock())
        {
            definition = Store.Get(name);
            var snapshot = Probe(name);
            if (snapshot.Active)
            {
                if (snapshot.State == VmState.Crashed)
                    throw new VmStateException(name, snapshot.State,
                        $"VM '{name}' has crashed ({snapshot.Reason}); its VMM is kept for inspection. Stop it before starting it again, or restart it");
                // "already paused" would read as if starting could not go further; resuming is what is wanted.
                if (snapshot.State == VmState.Paused)
                    throw new VmStateException(name, snapshot.State, $"VM '{name}' is paused; resume it (Resume-KvmVm) instead of starting it");
                throw new VmStateException(name, snapshot.State, $"VM '{name}' is already {Describe(snapshot.State)}");
            }
            ClearRuntimeFiles(name, snapshot.PidFilePid, removeSocket: true);
            if (snapshot.State == VmState.Saved)
            {
                // Resume from the saved state: the VMM takes its configuration from the snapshot, not the definition.
                saved = Snapshots.TryGetSaved(name)!;
                SnapshotStore.CheckVmmDirectory(name, saved.VmmDirectory, Path.Combine(saved.Directory, SnapshotStore.SavedMetadataFileName));
                progress?.Report(new OperationProgress($"Starting VM '{name}'", "Restoring the saved state", 0) { VmName = name });
                process = Launcher.LaunchRestore(Store, name, saved.VmmDirectory, paused: saved.VmState == nameof(VmState.Paused));
            }
            else
            {
                VmmFeatureSupport.EnsureSupported(definition);
                // Host PCI functions go to vfio-pci now (recorded in the VM's folder first), and back once the VMM is gone.
                var passthrough = new PciPassthroughHost();
                passthrough.PrepareForStart(Store, definition);
                progress?.Report(new OperationProgress($"Starting VM '{name}'", "Launching kvmps-vmm", 0) { VmName = name });
                try { process = Launcher.Launch(Store, definition); }
                catch
                {
                    passthrough.ReleaseAfterStop(Store, name);
                    throw;
                }
                // The one-time boot device went into this start's configuration; the next start uses the boot order again.
                if (definition.BootOnce is not null)
                    definition = Store.UpdateWhileLocked(definition with { BootOnce = null });
            }
        }
        var info = WaitUntilBooted(definition, process, wait, progress);
        if (saved is not null)
            using (Store.Lock())
                Snapshots.DeleteSaved(name); // it runs from it now (memory mapped privately: removing the files is safe)
        return info;
    }

    /// <summary>
    /// Stops the VM. Graceful (default): presses the ACPI power button and waits up to
    /// <paramref name="gracefulTimeout"/> for the guest to power off, then stops it by force (the VMM does the
    /// fallback; a guest that never enabled the power button is stopped at once). A VMM that is busy or does not
    /// answer is asked again until the graceful timeout has passed, and only then terminated (SIGTERM, then
    /// SIGKILL): a stalled VMM's guest is not cut off while it may still shut down. <paramref name="force"/>: power
    /// off at once (an unanswering VMM is signalled at once). Stopping an Off VM does nothing; stopping a VM whose
    /// VMM died clears its Crashed state (<see cref="VmStopOutcome.VmmDied"/>). Returns once the VMM has exited.
    /// </summary>
    public VmStopResult Stop(string name, TimeSpan? gracefulTimeout = null, bool force = false) =>
        Stop(name, gracefulTimeout, force, signalIfUnreachable: true);

    /// <summary>
    /// <see cref="Stop(string, TimeSpan?, bool)"/>; with <paramref name="signalIfUnreachable"/> false a VMM that cannot
    /// be reached is never signalled: <see cref="VmStateException"/> (state <see cref="VmState.Unresponsive"/>) instead.
    /// What apply uses: it never kills a VMM it could not talk to.
    /// </summary>
    internal VmStopResult Stop(string name, TimeSpan? gracefulTimeout, bool force, bool signalIfUnreachable)
    {
        Store.Get(name);
        var snapshot = Probe(name);
        if (snapshot.State == VmState.Saved)
        {
            if (!force)
                throw new VmStateException(name, snapshot.State,
                    $"VM '{name}' is saved; start it (Start-KvmVm) to resume it, or turn it off (Stop-KvmVm -TurnOff) to discard its saved state");
            using (Store.Lock())
                Snapshots.DeleteSaved(name);
            return new VmStopResult(name, snapshot.State, VmStopOutcome.SavedStateDiscarded, TimeSpan.Zero, TimeSpan.Zero, false);
        }
        if (!snapshot.Active)
        {
            using (Store.Lock())
                ClearRuntimeFiles(name, snapshot.PidFilePid, removeSocket: snapshot.State == VmState.Crashed);
            // A VMM that died without its clean exit (killed, crashed) is not "not running": say what happened.
            return snapshot.State == VmState.Crashed
                ? new VmStopResult(name, snapshot.State, VmStopOutcome.VmmDied, TimeSpan.Zero, TimeSpan.Zero, false) { Detail = snapshot.Reason }
                : new VmStopResult(name, snapshot.State, VmStopOutcome.NotRunning, TimeSpan.Zero, TimeSpan.Zero, false);
        }
        if (!signalIfUnreachable && snapshot.State == VmState.Unresponsive)
            throw new VmStateException(name, snapshot.State, $"VM '{name}' is unresponsive ({snapshot.Reason}); it was left alone: a VMM that cannot be reached is never killed here");
        return StopActive(name, snapshot, gracefulTimeout ?? Options.GracefulStopTimeout, force, lockHeld: false, signalIfUnreachable);
    }

    /// <summary>Stops the VM if it is active (as <see cref="Stop"/>) and starts it again.</summary>
    public VmInfo Restart(string name, TimeSpan? gracefulTimeout = null, bool force = false, TimeSpan? startTimeout = null, IProgress<OperationProgress>? progress = null)
    {
        Stop(name, gracefulTimeout, force);
        return Start(name, startTimeout, progress);
    }

    /// <summary>Pauses every vCPU of a running VM (no-op if paused); other states → <see cref="VmStateException"/>.</summary>
    public VmInfo Suspend(string name) => PauseOrResume(name, pause: true);

    /// <summary>Resumes a paused VM (no-op if running); other states → <see cref="VmStateException"/>.</summary>
    public VmInfo Resume(string name) => PauseOrResume(name, pause: false);

    /// <summary>
    /// Removes the VM from the store. An active VM (any VMM process, including a crashed one kept for
    /// inspection) needs <paramref name="force"/>, which powers it off first. <paramref name="deleteDisks"/>
    /// false moves the disk directory to the store's retained-disks folder; disk files outside the store are never deleted.
    /// As Hyper-V's Remove-VM deletes the VM's checkpoints, the internal qcow2 snapshots its checkpoints made are deleted
    /// from every disk that stays (disks outside the store, and all disks with <paramref name="deleteDisks"/> false)
    /// before the VM goes; a disk that cannot be changed fails the removal naming it, and the VM stays (a retry
    /// goes on where it stopped).
    /// </summary>
    public VmRemoveResult Remove(string name, bool force = false, bool deleteDisks = true)
    {
        using (Store.Lock())
        {
            Store.Get(name);
            var snapshot = Probe(name);
            if (snapshot.Active)
            {
                if (!force)
                    throw new VmStateException(name, snapshot.State, $"VM '{name}' is {Describe(snapshot.State)}; use -Force to stop and remove it");
                StopActive(name, snapshot, TimeSpan.Zero, force: true, lockHeld: true);
            }
            var removedDiskSnapshots = DeleteCheckpointDiskSnapshots(name, deleteDisks);
            var deleted = Store.DeleteWhileLocked(name, deleteDisks ? DiskRetention.Delete : DiskRetention.Keep);
            VmmCgroupOptions.RemoveFolders(name); // a VMM that ended by itself left its cgroup folder (docs/confinement.md)
            return new VmRemoveResult(name, snapshot.Active, deleted.RetainedDisksDirectory) { RemovedDiskSnapshots = removedDiskSnapshots };
        }
    }

    // ---- autostart ---------------------------------------------------------------------------------

    /// <summary>
    /// Starts every VM with Autostart = true that is not active, and resumes every Saved VM (what <c>kvmps autostart</c>
    /// runs at boot: a host shut down with saved VMs gets them back). Never throws for one VM's failure: each VM gets a result.
    /// </summary>
    public IReadOnlyList<AutostartResult> Autostart(TimeSpan? timeout = null)
    {
        // Pools with autostart first: their folders checked and re-created, so VMs on them find their volumes' folder.
        var hostResources = new List<AutostartResult>();
        foreach (var (pool, created, error) in new Pools.StoragePoolManager(Store).AutostartPools())
            hostResources.Add(new AutostartResult(pool, error is not null ? AutostartOutcome.Failed : created ? AutostartOutcome.Started : AutostartOutcome.AlreadyRunning, null, error, AutostartResourceKind.Pool));
        // Then networks with autostart (bridge, rules, dnsmasq), so VMs with adapters on them can start.
        foreach (var (network, wasActive, error) in new Networks.NetworkManager(Store).AutostartNetworks())
            hostResources.Add(new AutostartResult(network, error is not null ? AutostartOutcome.Failed : wasActive ? AutostartOutcome.AlreadyRunning : AutostartOutcome.Started, null, error, AutostartResourceKind.Network));
        var candidates = new List<string>();
        var results = new List<AutostartResult>();
        foreach (var name in Store.ListNames())
        {
            try
            {
                if (Store.TryGet(name) is { Autostart: true } || Snapshots.HasSavedState(name))
                    candidates.Add(name);
            }
            catch (VmStoreException e)
            {
                results.Add(new AutostartResult(name, AutostartOutcome.Failed, null, e));
            }
        }
        var started = new AutostartResult[candidates.Count];
        Parallel.For(0, candidates.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Options.AutostartParallelism) }, i =>
        {
            var name = candidates[i];
            try
            {
                var info = Get(name);
                started[i] = info.IsActive
                    ? new AutostartResult(name, AutostartOutcome.AlreadyRunning, info, null)
                    : new AutostartResult(name, AutostartOutcome.Started, Start(name, timeout), null);
            }
            catch (VmStateException e) when (e.State is not VmState.Off)
            {
                started[i] = new AutostartResult(name, AutostartOutcome.AlreadyRunning, TryGetQuietly(name), null);
            }
            catch (Exception e)
            {
                started[i] = new AutostartResult(name, AutostartOutcome.Failed, TryGetQuietly(name), e);
            }
        });
        results.AddRange(started);
        return [.. hostResources, .. results.OrderBy(r => r.Name, StringComparer.Ordinal)];
    }

    // ---- internals ---------------------------------------------------------------------------------

    private RuntimeSnapshot Probe(string name) => VmRuntimeProbe.Probe(Store, name, Options.QueryTimeout);

    private VmInfo? TryGetQuietly(string name)
    {
        try
        {
            return TryGet(name);
        }
        catch (Exception)
        {
            return null;
        }
    }

    private VmInfo ToInfo(VmDefinition definition, RuntimeSnapshot snapshot, string? reasonOverride = null)
    {
        var name = definition.Name;
        VmLiveInfo? live = null;
        if (snapshot is { Status: { } status, Description: { } description })
        {
            var (coldDisks, coldAdapters) = ColdPluggedDevices.Of(definition, description, p => Store.ResolveDiskPath(name, p));
            live = new VmLiveInfo(PresentVcpus(description, status), description.MaxVcpus, description.MemoryBytes, status.Boots, status.NestedPvm,
                description.Kernel, description.Cmdline, description.Version, status.Exit)
            {
                MemoryResize = SupportsMemoryResize(description),
                DeviceHotplug = SupportsDeviceHotplug(description),
                ColdPluggedDisks = coldDisks,
                ColdPluggedAdapters = coldAdapters,
                RemovesConfiguredDevices = description.Devices.Any(d => d.Removable is not null),
                MediaChange = description.Requests.Contains(KvmPS.Contract.MediaChangeRequest.Name),
                MemoryMaximumBytes = snapshot.Memory?.MaximumBytes,
                MemoryRequestedBytes = snapshot.Memory?.RequestedBytes,
                MemoryPluggedBytes = snapshot.Memory?.PluggedBytes,
                CgroupLimits = snapshot.Pid is { } pid && VmmCgroupOptions.FoldersOf(pid, name).Count > 0,
            };
        }
        return new VmInfo
        {
            Definition = definition,
            State = snapshot.State,
            StateReason = reasonOverride ?? snapshot.Reason,
            Pid = snapshot.Active ? snapshot.Pid : null,
            Uptime = snapshot.Status?.Uptime,
            Live = live,
            VmDirectory = Store.VmDirectory(name),
            SocketPath = Store.SocketPath(name),
            SerialLogPath = Store.SerialLogPath(name),
        };
    }

    private VmInfo WaitUntilBooted(VmDefinition definition, VmmProcess process, TimeSpan timeout, IProgress<OperationProgress>? progress)
    {
        var name = definition.Name;
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        progress?.Report(new OperationProgress($"Starting VM '{name}'", $"Waiting for kvmps-vmm (pid {process.Pid})", 50) { VmName = name });
        while (true)
        {
            if (process.Exited.IsCompleted)
                return EndedDuringStart(definition, process, process.Exited.Result);
            // Until the VMM listens this reads Starting; once it exits, the Exited check above takes over.
            var snapshot = Probe(name);
            if (snapshot.State is VmState.Running or VmState.Paused or VmState.Crashed && snapshot.Pid == process.Pid)
            {
                progress?.Report(new OperationProgress($"Starting VM '{name}'", "Running", 100) { VmName = name, Completed = true });
                return ToInfo(definition, snapshot);
            }
            if (Environment.TickCount64 >= deadline)
            {
                var tail = process.ReadLogTail();
                KillAndClear(name, process.Pid, process.SocketPath);
                throw new VmmLaunchException(name,
                    $"VM '{name}': kvmps-vmm (pid {process.Pid}) did not report Running within {timeout.TotalSeconds:0.#} s and was killed" + FormatTail(tail),
                    logTail: tail);
            }
            process.Exited.Wait(20);
        }
    }

    /// <summary>The VMM exited before we saw it running: a clean guest exit is a (short) successful start, anything else a launch failure.</summary>
    private VmInfo EndedDuringStart(VmDefinition definition, VmmProcess process, ProcessExit exit)
    {
        var name = definition.Name;
        using (Store.Lock())
            ClearRuntimeFiles(name, process.Pid, removeSocket: exit.ExitCode is null);
        if (exit.ExitCode is KvmPS.Contract.VmmExitCode.Ok)
            return ToInfo(definition, Probe(name), "the guest powered off right after starting (kvmps-vmm exited with status 0)");
        if (exit.ExitCode is { } odd && KvmPS.Contract.VmmExitCode.IsDebugExit(odd, out int guestValue))
            return ToInfo(definition, Probe(name), $"the guest exited through the debug-exit port with value {guestValue} (kvmps-vmm exit status {odd})");
        var tail = process.ReadLogTail();
        // The VMM's own error line says which file and why; the exit status alone only says what kind of thing failed.
        var what = exit.ExitCode is { } code ? StartFailureText.Explain(Store, name, code, tail)
            : exit.Signal is { } signal ? $"kvmps-vmm was killed by signal {signal}" + FormatTail(tail) : "kvmps-vmm exited" + FormatTail(tail);
        throw new VmmLaunchException(name, $"VM '{name}' failed to start: {what}", exit.ExitCode, exit.Signal, tail);
    }

    private VmInfo PauseOrResume(string name, bool pause)
    {
        Store.Get(name);
        var snapshot = Probe(name);
        var ok = pause ? snapshot.State is VmState.Running or VmState.Paused : snapshot.State is VmState.Paused or VmState.Running;
        if (!ok)
            throw new VmStateException(name, snapshot.State,
                $"VM '{name}' is {Describe(snapshot.State)}; only a {(pause ? "running" : "paused")} VM can be {(pause ? "suspended" : "resumed")}");
        try
        {
            using var client = VmmClient.Connect(Store.SocketPath(name), Options.QueryTimeout, Options.QueryTimeout);
            if (pause)
                client.Pause();
            else
                client.Resume();
        }
        catch (VmmRequestException e) when (e.Code == "InvalidState")
        {
            var now = Probe(name);
            throw new VmStateException(name, now.State, $"VM '{name}' cannot be {(pause ? "suspended" : "resumed")}: {e.VmmMessage}", e);
        }
        catch (VmmNotRunningException e)
        {
            throw new VmStateException(name, VmState.Off, $"VM '{name}' stopped meanwhile", e);
        }
        return Get(name);
    }

    private static string Describe(VmState state) => state switch
    {
        VmState.Off => "off",
        VmState.Starting => "starting",
        VmState.Running => "running",
        VmState.Paused => "paused",
        VmState.Stopping => "stopping",
        VmState.Crashed => "crashed",
        VmState.Saved => "saved",
        VmState.Unresponsive => "unresponsive (its VMM does not answer in time)",
        _ => "in an unknown state (its VMM's answers cannot be read)",
    };

    /// <summary>docs/vmm.md, "Exit status".</summary>
    public static string ExitMeaning(int code) => KvmPS.Contract.VmmExitCode.Describe(code);

    private static string FormatTail(string tail) => string.IsNullOrEmpty(tail) ? "" : ": " + tail.Replace("\n", " | ");

    private static void TryDeleteFile(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}
