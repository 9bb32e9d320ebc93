using KvmPS.Management.Definitions;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>Definition changes, and how they reach a running VM (vCPU hot-plug, balloon; <see cref="LiveChangeRules"/> decides).</summary>
public sealed partial class VmManager
{
    /// <summary>
    /// Read-modify-write of the definition under the store lock. <paramref name="change"/> gets the current
    /// definition and returns the new one (it may throw to reject the change; nothing is written then). The
    /// result lists every changed property and how it takes effect: on a running (or paused) VM, what
    /// <see cref="LiveChangeRules"/> allows is applied to the VMM first (<see cref="ChangeApplication.AppliedLive"/>;
    /// if the VMM refuses, nothing is stored and the VM is unchanged), the rest is <see cref="ChangeApplication.RestartNeeded"/>.
    /// <paramref name="scope"/> <see cref="ChangeScope.Config"/> applies nothing live; <see cref="ChangeScope.Live"/>
    /// refuses (nothing changes) unless the VM runs and every VMM-visible change applies live.
    /// <para>Disks and network adapters added or removed on a running VM are hot-plugged (<see cref="ApplyDevicesLive"/>),
    /// after every other live change; a removal waits up to <paramref name="deviceRemoveTimeout"/> (default
    /// <see cref="VmManagerOptions.DeviceRemoveTimeout"/>) for the guest to release the device, without holding the store
    /// lock, and the device leaves the definition once it has (<see cref="VmDeviceRemovalTimeoutException"/> when it has
    /// not). If one of several device changes fails, the definition stored is what the VM then has (the devices
    /// hot-plugged so far), and the error is thrown.</para>
    /// </summary>
    public ChangeResult Update(string name, Func<VmDefinition, VmDefinition> change, ChangeScope scope = ChangeScope.Current, TimeSpan? deviceRemoveTimeout = null)
    {
        var timeout = deviceRemoveTimeout ?? Options.DeviceRemoveTimeout;
        var (result, ejecting) = UpdateLocked(name, change, scope);
        // Waiting for a guest never holds the store lock (as for a graceful stop): the ejects were requested under it.
        return ejecting.Count == 0 ? result : FinishRemovals(result, ejecting, timeout);
    }

    private (ChangeResult Result, IReadOnlyList<PendingRemoval> Ejecting) UpdateLocked(string name, Func<VmDefinition, VmDefinition> change, ChangeScope scope)
    {
        ArgumentNullException.ThrowIfNull(change);
        using (Store.Lock())
        {
            var before = Store.Get(name);
            var after = change(before) ?? throw new InvalidOperationException($"VM '{name}': the update returned no definition");
            if (!string.Equals(after.Name, before.Name, StringComparison.Ordinal))
                throw new ManagementValidationException(name, "Name", $"renaming a VM is not supported (tried to change it to '{after.Name}')");
            after.Validate();
            var differences = VmDefinitionDiff.Compare(before, after);
            var snapshot = Probe(name);
            var limits = snapshot is { Active: true, State: VmState.Running or VmState.Paused } ? LimitsOf(snapshot, before) : null;
            if (scope == ChangeScope.Live && limits is null)
                throw new VmStateException(name, snapshot.State,
                    $"VM '{name}' is {Describe(snapshot.State)}; a live change needs it running or paused (change the stored definition only with --config)");
            if (differences.Count == 0)
                return (new ChangeResult(before, before, snapshot.State, Array.Empty<PropertyChange>()), []);

            var changes = new List<PropertyChange>();
            foreach (var (property, old, @new) in differences)
            {
                var application = !snapshot.Active || VmDefinitionDiff.HostOnlyProperties.Contains(property) ? ChangeApplication.Stored
                    : scope != ChangeScope.Config && limits is not null && LiveChangeRules.CanApplyLive(property, before, after, limits) ? ChangeApplication.AppliedLive
                    : ChangeApplication.RestartNeeded;
                if (scope == ChangeScope.Live && application == ChangeApplication.RestartNeeded)
                    throw new ManagementValidationException(name, property, NotLiveReason(property, before, after, limits!));
                changes.Add(new PropertyChange(property, old, @new, application));
            }
            // The VMM first: if it refuses, nothing has been stored and the VM runs as before.
            foreach (var live in changes.Where(c => c.Application == ChangeApplication.AppliedLive && !IsDeviceList(c.Property)))
                ApplyLive(name, live.Property, after);
            // Devices last: each hot-plug is its own step the guest takes part in, so a failure part-way is stored as it stands.
            // Devices whose eject the guest has not finished stay in the stored definition until it has (FinishRemovals).
            IReadOnlyList<PendingRemoval> ejecting = [];
            var stored = after;
            if (changes.Any(c => c.Application == ChangeApplication.AppliedLive && IsDeviceList(c.Property)))
                (stored, ejecting) = ApplyDevicesLive(name, before, after);
            Store.UpdateWhileLocked(stored);
            return (new ChangeResult(before, stored, snapshot.State, changes), ejecting);
        }
    }

    /// <summary>
    /// Sets the vCPU count (and optionally the hot-plug maximum). On a running VM a count within the maximum its VMM
    /// was started with is hot-plugged at once (ACPI CPU hot-plug) and stored; a new maximum needs a restart.
    /// Count above the maximum → <see cref="ManagementValidationException"/> naming the limit, nothing changed.
    /// </summary>
    public ChangeResult SetVcpu(string name, int count, int? maximum = null, ChangeScope scope = ChangeScope.Current) => Update(name, current =>
    {
        var newMaximum = maximum ?? current.Vcpus.Maximum;
        if (newMaximum < 1 || newMaximum > VcpuSettings.Limit)
            throw new ManagementValidationException(name, "VcpuMaximum", $"must be between 1 and {VcpuSettings.Limit} (got {newMaximum})");
        if (count < 1)
            throw new ManagementValidationException(name, "VcpuCount", $"must be at least 1 (got {count})");
        if (count > newMaximum)
            throw new ManagementValidationException(name, "VcpuCount",
                $"{count} vCPUs exceed the VM's maximum of {newMaximum}" + (maximum is null
                    // Only a running VM needs a restart for a new maximum; saying so for one that is off misleads.
                    ? Probe(name).Active ? " (raise VcpuMaximum; that needs a restart)" : " (raise VcpuMaximum too)"
                    : ""));
        return current with { Vcpus = new VcpuSettings(count, newMaximum) };
    }, scope);

    /// <summary>
    /// Sets the memory target the balloon should give the guest. Must lie within [MemoryMinimumBytes,
    /// MemoryMaximumBytes] (else <see cref="ManagementValidationException"/>). A running VM with a balloon and a target
    /// no larger than the memory it booted with shrinks at once; otherwise it is recorded as MemoryStartupBytes.
    /// </summary>
    public ChangeResult SetBalloon(string name, long targetBytes)
    {
        var definition = Store.Get(name);
        ValidateBalloonTarget(definition, targetBytes);
        // Live: a running VM with a balloon shrinks (or grows back up to the memory it booted with) at once,
        // through the VMM's virtio-balloon. The balloon size is what is taken away: booted memory − target.
        if (definition.BalloonEnabled && Probe(name) is { State: VmState.Running or VmState.Paused } snapshot)
        {
            try
            {
                using var client = VmmClient.Connect(Store.SocketPath(name), Options.QueryTimeout, Options.QueryTimeout);
                long booted = client.Describe().MemoryBytes;
                if (targetBytes <= booted)
                {
                    client.SetBalloon(booted - targetBytes);
                    var change = new PropertyChange("BalloonTarget", SizeParser.Format(booted), SizeParser.Format(targetBytes), ChangeApplication.AppliedLive);
                    return new ChangeResult(definition, definition, snapshot.State, [change]);
                }
            }
            catch (VmmNotRunningException) { /* stopped meanwhile: store it for the next start below */ }
        }
        // Otherwise the target becomes the memory the VM boots with: a running VM with virtio-mem headroom grows to it at
        // once (memory.set), else it needs a restart.
        var result = Update(name, current =>
        {
            ValidateBalloonTarget(current, targetBytes);
            return current with { Memory = current.Memory with { StartupBytes = targetBytes } };
        });
        if (definition.BalloonEnabled && result.Changes.Any(c => c is { Property: "MemoryStartupBytes", Application: ChangeApplication.AppliedLive }))
            EmptyBalloon(name);
        return result;
    }

    /// <summary>
    /// Above the boot memory virtio-mem gives the guest the target; a balloon still inflated from an earlier, lower
    /// target would keep taking its share, so it is emptied (a VM stopped meanwhile has nothing to empty).
    /// </summary>
    private void EmptyBalloon(string name)
    {
        try
        {
            using var client = VmmClient.Connect(Store.SocketPath(name), Options.QueryTimeout, Options.QueryTimeout);
            client.SetBalloon(0);
        }
        catch (VmmNotRunningException) { }
    }

    private static void ValidateBalloonTarget(VmDefinition current, long targetBytes)
    {
        string name = current.Name;
        var memory = current.Memory;
        if (targetBytes < memory.MinimumBytes)
            throw new ManagementValidationException(name, "BalloonTarget",
                $"{SizeParser.Format(targetBytes)} is below the VM's minimum memory of {SizeParser.Format(memory.MinimumBytes)} (MemoryMinimumBytes)");
        if (targetBytes > memory.MaximumBytes)
            throw new ManagementValidationException(name, "BalloonTarget",
                $"{SizeParser.Format(targetBytes)} is above the VM's maximum memory of {SizeParser.Format(memory.MaximumBytes)} (MemoryMaximumBytes)");
        var granularity = current.MemoryBacking.HugePages == HugePagesMode.Hugetlbfs ? VmDefinition.HugePageBytes : VmDefinition.PageBytes;
        if (targetBytes % granularity != 0)
            throw new ManagementValidationException(name, "BalloonTarget", $"{targetBytes} bytes is not a multiple of {granularity}");
    }

    /// <summary>What the running VMM can change, from its <c>describe</c> reply (taken by the probe).</summary>
    private LiveLimits? LimitsOf(RuntimeSnapshot snapshot, VmDefinition definition)
    {
        if (snapshot.Description is not { } description)
            return null;
        var (coldDisks, coldAdapters) = ColdPluggedDevices.Of(definition, description, p => Store.ResolveDiskPath(definition.Name, p));
        return new LiveLimits(description.MaxVcpus, SupportsMemoryResize(description), description.MemoryBytes)
        {
            MaximumMemoryBytes = snapshot.Memory?.MaximumBytes,
            DeviceHotplug = SupportsDeviceHotplug(description),
            ColdPluggedDisks = coldDisks,
            ColdPluggedAdapters = coldAdapters,
            RemovesConfiguredDevices = description.Devices.Any(d => d.Removable is not null),
            MediaChange = description.Requests.Contains(KvmPS.Contract.MediaChangeRequest.Name),
            CgroupLimits = snapshot.Pid is { } pid && VmmCgroupOptions.FoldersOf(pid, definition.Name).Count > 0,
        };
    }

    /// <summary>
    /// The VMM resizes memory when it answers <c>memory.set</c>: it was started with a maximum above its boot memory
    /// (<see cref="VmmConfigBuilder"/> passes MemoryMaximumBytes), so it has a virtio-mem device.
    /// </summary>
    private static bool SupportsMemoryResize(KvmPS.Contract.DescribeReply description) =>
        description.Requests.Contains(KvmPS.Contract.MemorySetRequest.Name);

    /// <summary>
    /// vCPUs present now: the VMM's <c>present_vcpus</c> (boot count ± hot-plug); an older VMM without it lists every
    /// vCPU it ever created in <c>status</c>, ejected ones included, so those are left out.
    /// </summary>
    private static int PresentVcpus(KvmPS.Contract.DescribeReply description, VmmStatus status) =>
        description.PresentVcpus ?? status.Vcpus.Count(v => !string.Equals(v.State, "Ejected", StringComparison.Ordinal));

    /// <summary>Sends one live-applicable change to the running VMM. Caller holds the store lock.</summary>
    private void ApplyLive(string name, string property, VmDefinition after)
    {
        if (property is "CpuRelativeWeight" or "CpuMaximumPercent" or "VmmOverheadLimitBytes")
        {
            ApplyCgroupLimitsLive(name, property, after);
            return;
        }
        try
        {
            using var client = VmmClient.Connect(Store.SocketPath(name), Options.QueryTimeout, Options.QueryTimeout);
            switch (property)
            {
                case "VcpuCount":
                    client.SetVcpus(after.Vcpus.Count);
                    // A cap is a share of the VM's vCPUs: more or fewer of them move it.
                    if (after.CpuMaximumPercent != VmResourceLimits.NoCpuCapPercent)
                        ApplyCgroupLimitsLive(name, "CpuMaximumPercent", after);
                    break;
                case "DvdDrives":
                    ChangeMedia(client, name, Store.Get(name), after);
                    break;
                case "MemoryStartupBytes":
                    // The whole amount, boot memory included: virtio-mem plugs (or unplugs) the difference in 2 MiB blocks.
                    client.SetMemory(after.Memory.StartupBytes);
                    break;
                default:
                    // LiveChangeRules and this switch list the same properties; a mismatch is a bug here, not bad input.
                    throw new InvalidOperationException($"VM '{name}': {property} has no live path");
            }
        }
        catch (VmmRequestException e)
        {
            throw new ManagementValidationException(name, property, $"the running VM refused the change: {e.VmmMessage}");
        }
        catch (VmmNotRunningException e)
        {
            throw new VmStateException(name, VmState.Off, $"VM '{name}' stopped meanwhile; nothing was changed", e);
        }
    }

    /// <summary>Writes the VM's limits into its running VMM's cgroup (VmmCgroupOptions). Caller holds the store lock.</summary>
    private void ApplyCgroupLimitsLive(string name, string property, VmDefinition after)
    {
        if (Probe(name) is not { Pid: { } pid })
            throw new VmStateException(name, VmState.Off, $"VM '{name}' stopped meanwhile; nothing was changed");
        try
        {
            VmmCgroupOptions.ApplyLive(pid, after, after.Vcpus.Count);
        }
        catch (KvmPS.Interop.CgroupLimitException e)
        {
            throw new ManagementValidationException(name, property, $"the running VM's cgroup refused the change: {e.Message}");
        }
    }

    private static string NotLiveReason(string property, VmDefinition before, VmDefinition after, LiveLimits limits) => property switch
    {
        "VcpuCount" => $"{after.Vcpus.Count} vCPUs exceed the running VM's maximum of {limits.MaxVcpus} (the VcpuMaximum it was started with; a higher maximum needs a restart)",
        "CpuRelativeWeight" or "CpuMaximumPercent" or "VmmOverheadLimitBytes" =>
            "the running VM's VMM has no cgroup of its own to limit (it was started without limits and unjailed); the change takes effect at its next start",
        "MemoryStartupBytes" when !limits.MemoryResize => "the running VM's VMM cannot resize memory; the change needs a restart",
        "MemoryStartupBytes" when after.Memory.StartupBytes < limits.BootMemoryBytes =>
            $"{SizeParser.Format(after.Memory.StartupBytes)} is below the {SizeParser.Format(limits.BootMemoryBytes)} the running VM booted with (shrink it with the balloon, Invoke-KvmBalloon)",
        "Disks" or "NetworkAdapters" or "VfioUserDevices" or "PciPassthrough" when !limits.DeviceHotplug => HotplugMissingAdvice,
        "VfioUserDevices" => "the running VM's guest RAM is not in memfds (it was started with KsmEnabled and no vfio-user device), so a vfio-user server cannot map it; the change needs a restart",
        "NetworkAdapters" when DeviceChange.ChangesSriovAdapters(before, after) =>
            "an SR-IOV adapter is a passthrough device, not hot-plugged yet: adding, removing or changing one takes effect at the VM's next start",
        "Disks" when DeviceChange.Removed(before.Disks, after.Disks, DeviceChange.DiskKey).FirstOrDefault(d => limits.ColdPluggedDisks.Contains(d.Path)) is { } cold =>
            $"disk '{cold.Path}' cannot be removed while the VM runs: {(limits.RemovesConfiguredDevices ? "it is the VM's boot disk (the first disk the VMM was started with)" : "the running VMM removes only disks added since it started (it predates live removal of configured disks; a newer kvmps-vmm lifts that)")}; stop the VM first, or remove it from the definition only (-Config; kvmps: --config) for the next start",
        "NetworkAdapters" when DeviceChange.Removed(before.NetworkAdapters, after.NetworkAdapters, DeviceChange.AdapterKey).FirstOrDefault(a => limits.ColdPluggedAdapters.Contains(DeviceChange.AdapterKey(a))) is { } coldAdapter =>
            $"network adapter {coldAdapter.MacAddress} was part of the VM when it started and the running VMM removes only adapters added since (it predates live removal of configured adapters); stop the VM first, or remove it from the definition only (-Config; kvmps: --config) for the next start",
        "Disks" => "a disk the running VM has cannot be changed in place (or reordered); detach it and attach it again, or the change needs a restart",
        "NetworkAdapters" => "a network adapter the running VM has cannot be changed in place (or reordered); remove it and add it again, or the change needs a restart",
        "MemoryStartupBytes" => $"{SizeParser.Format(after.Memory.StartupBytes)} exceeds the maximum memory of {SizeParser.Format(limits.MaximumMemoryBytes ?? after.Memory.MaximumBytes)} the running VM was started with (MemoryMaximumBytes; a higher maximum needs a restart)",
        _ => "cannot be changed on a running VM; the change needs a restart",
    };
}
