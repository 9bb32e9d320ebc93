using KvmPS.Management.Definitions;
using KvmPS.Management.Store;

namespace KvmPS.Management.Lifecycle;

/// <summary>What <see cref="VmManager.AttachDisk"/> is asked to do.</summary>
/// <param name="Path">Image path: absolute, or relative to the VM's disk directory.</param>
/// <param name="Format">Null: <see cref="DiskDefinition.DefaultFormat"/>.</param>
/// <param name="CreateSizeBytes">Create a new image of this size first (it must not exist); null: attach an existing image.</param>
/// <param name="BackingImagePath">With <paramref name="CreateSizeBytes"/>: a qcow2 overlay on this image.</param>
public sealed record DiskAttachRequest(string Path, DiskFormat? Format = null, long? CreateSizeBytes = null, string? BackingImagePath = null, bool ReadOnly = false);

/// <summary>A disk request resolved against the store: the definition entry and the image's absolute path.</summary>
public sealed record DiskAttachPlan(DiskDefinition Disk, string FullPath, string? FullBackingPath, long? CreateSizeBytes);

/// <summary>The definition-editing operations every front end offers (cmdlets, CLI, DSC), each under the store lock.</summary>
public sealed partial class VmManager
{
    /// <summary>The stored definition; throws <see cref="VmNotFoundException"/>.</summary>
    public VmDefinition GetDefinition(string name) => Store.Get(name);

    /// <summary>The store's root folder (named in not-found errors).</summary>
    public string StoreRoot => Store.Root;

    /// <summary>The VM's serial console log; throws <see cref="VmNotFoundException"/> for an unknown VM.</summary>
    public string SerialLogPath(string name)
    {
        Store.Get(name);
        return Store.SerialLogPath(name);
    }

    /// <summary>Names of the VMs in the store, in store order.</summary>
    public IReadOnlyList<string> ListNames() => Store.ListNames();

    /// <summary>Applies a partial settings change (Set-KvmVm, Set-KvmMemory, kvmps vm setmem); see <see cref="Update"/> for <paramref name="scope"/>.</summary>
    public ChangeResult ChangeSettings(string name, VmSettingsChange change, ChangeScope scope = ChangeScope.Current)
    {
        ArgumentNullException.ThrowIfNull(change);
        return Update(name, current =>
        {
            var after = change.ApplyTo(current);
            if (scope != ChangeScope.Config && change.MemoryStartupBytes is { } startup && change.MemoryMaximumBytes is null)
                RefuseMemoryAboveRunningMaximum(name, startup);
            return after;
        }, scope);
    }

    /// <summary>
    /// Memory on a running VM that resizes it (virtio-mem) goes up to the maximum its VMM was started with. Asked for more
    /// without a new maximum, the change is refused naming that limit (as <see cref="SetVcpu"/> refuses a count above
    /// VcpuMaximum) instead of silently widening the maximum and waiting for a restart; give a maximum too for that.
    /// </summary>
    private void RefuseMemoryAboveRunningMaximum(string name, long startupBytes)
    {
        var snapshot = Probe(name);
        if (snapshot is not { Active: true, State: VmState.Running or VmState.Paused } || LimitsOf(snapshot, Store.Get(name)) is not { MemoryResize: true } limits)
            return;
        if (limits.MaximumMemoryBytes is { } maximum && startupBytes > maximum)
            throw new ManagementValidationException(name, "MemoryStartupBytes",
                $"{SizeParser.Format(startupBytes)} exceeds the maximum memory of {SizeParser.Format(maximum)} the running VM was started with " +
                "(MemoryMaximumBytes; raise it too to store the change for the next start)");
    }

    /// <summary>How <see cref="AttachDisk"/> would attach <paramref name="request"/> (for confirmation texts); changes nothing.</summary>
    public DiskAttachPlan PlanDiskAttach(string name, DiskAttachRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var format = request.Format ?? DiskDefinition.DefaultFormat(request.Path, request.BackingImagePath);
        var disk = new DiskDefinition(request.Path, format, null, request.ReadOnly, request.BackingImagePath);
        var backing = request.BackingImagePath is null ? null : ResolveDiskPath(name, request.BackingImagePath, "Disks.BackingImagePath");
        return new DiskAttachPlan(disk, ResolveDiskPath(name, request.Path, "Disks.Path"), backing, request.CreateSizeBytes);
    }

    /// <summary>A disk path in the store; one that leaves the VM's disk directory is a validation error naming <paramref name="property"/>.</summary>
    private string ResolveDiskPath(string name, string path, string property)
    {
        try
        {
            return Store.ResolveDiskPath(name, path);
        }
        catch (StorePathEscapeException)
        {
            throw new ManagementValidationException(name, property, $"'{path}' leaves the VM's disk directory (use an absolute path for an image elsewhere)");
        }
    }

    /// <summary>
    /// Attaches a disk image, creating it first when <see cref="DiskAttachRequest.CreateSizeBytes"/> is given.
    /// An image created here is deleted again if the definition cannot take the disk, so a failed call leaves
    /// nothing behind. Without a size the image must exist (<see cref="DiskImageNotFoundException"/>).
    /// On a running VM the disk is hot-plugged (see <see cref="Update"/> for <paramref name="scope"/>) and stored once the
    /// VMM has it; a VMM that cannot hot-plug is <see cref="VmDeviceHotplugNotSupportedException"/>, one that refuses the
    /// disk <see cref="VmDeviceHotplugRefusedException"/> (an image created here is deleted again then).
    /// </summary>
    public ChangeResult AttachDisk(string name, DiskAttachRequest request, ChangeScope scope = ChangeScope.Current)
    {
        var plan = PlanDiskAttach(name, request);
        // Every definition rule is checked before an image is created (VmNotFound, a raw image with a backing file, a path used twice).
        var current = Store.Get(name);
        (current with { Disks = new ValueList<DiskDefinition>(current.Disks.Append(plan.Disk)) }).Validate();
        // The size to create is not part of the definition, so Validate does not see it; the storage layer's own
        // check would name its argument (sizeBytes), not the setting the user gave.
        if (plan.CreateSizeBytes is { } requested && (requested <= 0 || requested % DiskDefinition.SectorBytes != 0))
            throw new ManagementValidationException(name, "Disks.SizeBytes", $"must be a positive multiple of {DiskDefinition.SectorBytes} (got {requested})");
        var created = false;
        if (plan.CreateSizeBytes is { } size)
        {
            if (File.Exists(plan.FullPath))
                throw new ManagementValidationException(name, "Disks.Path", $"'{plan.FullPath}' already exists; attach it without SizeBytes, or choose another path");
            StorageDiskImageCreator.Create(plan.FullPath, plan.Disk.Format, size, plan.FullBackingPath);
            created = true;
        }
        else if (!File.Exists(plan.FullPath))
            throw new DiskImageNotFoundException(name, plan.FullPath);
        try
        {
            return Update(name, d => d with { Disks = new ValueList<DiskDefinition>(d.Disks.Append(plan.Disk)) }, scope);
        }
        catch when (created)
        {
            TryDeleteFile(plan.FullPath);
            throw;
        }
    }

    /// <summary>
    /// The VM's disk given as in its definition, or by the full path of its image. Throws
    /// <see cref="VmDeviceNotFoundException"/> when it has none.
    /// </summary>
    public DiskDefinition FindDisk(string name, string path) => FindDisk(Store.Get(name), path);

    private DiskDefinition FindDisk(VmDefinition definition, string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var wanted = Path.IsPathRooted(path) ? Path.GetFullPath(path) : null;
        return definition.Disks.FirstOrDefault(d => d.Path == path || (wanted is not null && Store.ResolveDiskPath(definition.Name, d.Path) == wanted))
               ?? throw new VmDeviceNotFoundException(definition.Name, "Disks.Path", path, $"VM '{definition.Name}' has no disk '{path}'");
    }

    /// <summary>
    /// Detaches a disk (see <see cref="FindDisk(string, string)"/>); the image file is kept. On a running VM the guest is
    /// asked to release it first and the definition changes only once it has: a guest that keeps it past
    /// <paramref name="removeTimeout"/> (default <see cref="VmManagerOptions.DeviceRemoveTimeout"/>) is
    /// <see cref="VmDeviceRemovalTimeoutException"/>, and the disk stays attached and defined.
    /// </summary>
    public ChangeResult DetachDisk(string name, string path, ChangeScope scope = ChangeScope.Current, TimeSpan? removeTimeout = null) => Update(name, d =>
    {
        var disk = FindDisk(d, path);
        return d with { Disks = new ValueList<DiskDefinition>(d.Disks.Where(x => x.Path != disk.Path)) };
    }, scope, removeTimeout);

    /// <summary>
    /// Adds a virtio-net adapter on a bridge, an existing tap or a KvmPS network, or an SR-IOV VF adapter
    /// (<paramref name="sriovVf"/>, with an optional <paramref name="vlanId"/>) — exactly one. Without a MAC it gets the
    /// generated one for its position (<see cref="NetworkAdapterDefinition.GenerateMac"/>). On a running VM a virtio-net
    /// adapter is hot-plugged (see <see cref="AttachDisk"/>); a VF adapter is a passthrough device and takes effect at the
    /// next start. A network must exist (it need not be started for a stopped VM); the VF is checked by the caller
    /// (<see cref="HostDevices.PciPassthroughCheck.CheckVirtualFunction"/>).
    /// </summary>
    public ChangeResult AddNetworkAdapter(string name, string? tapName, string? bridgeName, MacAddress? macAddress = null, ChangeScope scope = ChangeScope.Current, string? networkName = null,
        PciAddress? sriovVf = null, int? vlanId = null)
    {
        if ((tapName is null ? 0 : 1) + (bridgeName is null ? 0 : 1) + (networkName is null ? 0 : 1) + (sriovVf is null ? 0 : 1) != 1)
            throw new ManagementValidationException(name, "NetworkAdapters.Bridge", "give exactly one of NetworkAdapters.Bridge, NetworkAdapters.Tap, NetworkAdapters.Network and NetworkAdapters.SriovVf");
        if (networkName is not null)
            Networks.NetworkRegistry.Get(Store.Root, Networks.NetworkValidation.ValidateName(networkName));
        return Update(name, d =>
        {
            if (sriovVf is { } vf && d.NetworkAdapters.Any(a => a.SriovVf == vf))
                throw new VmDeviceAlreadyAttachedException(name, "NetworkAdapters.SriovVf", vf.ToString(), $"VM '{name}' already has a network adapter on SR-IOV VF {vf}");
            var mac = macAddress ?? NetworkAdapterDefinition.GenerateMac(d.Name, d.NetworkAdapters.Count, d.NetworkAdapters.Select(a => a.MacAddress));
            var adapter = new NetworkAdapterDefinition(tapName, bridgeName, mac, networkName, sriovVf, vlanId);
            return d with { NetworkAdapters = new ValueList<NetworkAdapterDefinition>(d.NetworkAdapters.Append(adapter)) };
        }, scope);
    }

    /// <summary>
    /// Removes the adapters with these MACs; a MAC the VM does not have is <see cref="VmDeviceNotFoundException"/>.
    /// On a running VM the guest releases them first (see <see cref="DetachDisk"/>).
    /// </summary>
    public ChangeResult RemoveNetworkAdapters(string name, IReadOnlyCollection<MacAddress> macAddresses, ChangeScope scope = ChangeScope.Current, TimeSpan? removeTimeout = null) => Update(name, d =>
    {
        foreach (var mac in macAddresses)
            if (!d.NetworkAdapters.Any(a => a.MacAddress == mac))
                throw new VmDeviceNotFoundException(name, "NetworkAdapters.MacAddress", mac.ToString(), $"VM '{name}' has no network adapter with MAC address {mac}");
        return d with { NetworkAdapters = new ValueList<NetworkAdapterDefinition>(d.NetworkAdapters.Where(a => !macAddresses.Contains(a.MacAddress))) };
    }, scope, removeTimeout);

    /// <summary>
    /// The VM's network adapter with this MAC address, or on this tap (its own, or the one generated for an adapter
    /// that names only a bridge). Throws <see cref="VmDeviceNotFoundException"/> when it has none.
    /// </summary>
    public NetworkAdapterDefinition FindNetworkAdapter(string name, string macOrTap)
    {
        ArgumentNullException.ThrowIfNull(macOrTap);
        var definition = Store.Get(name);
        MacAddress? mac = null;
        try
        {
            mac = MacAddress.Parse(macOrTap);
        }
        catch (ValueFormatException)
        {
        }
        for (var i = 0; i < definition.NetworkAdapters.Count; i++)
        {
            var adapter = definition.NetworkAdapters[i];
            if (adapter.MacAddress == mac || (adapter.SriovVf is null && (adapter.TapName ?? Vmm.VmmConfigBuilder.GeneratedTapName(name, i)) == macOrTap))
                return adapter;
        }
        throw new VmDeviceNotFoundException(name, "NetworkAdapters.MacAddress", macOrTap, $"VM '{name}' has no network adapter with MAC address or tap '{macOrTap}'");
    }

    /// <summary>Adds PCI functions (already checked with <see cref="HostDevices.PciPassthroughCheck"/>); one already attached is <see cref="VmDeviceAlreadyAttachedException"/>.</summary>
    public ChangeResult AddPciPassthrough(string name, IReadOnlyCollection<PciAddress> addresses) => Update(name, d =>
    {
        foreach (var address in addresses)
            if (d.PciPassthrough.Contains(address))
                throw new VmDeviceAlreadyAttachedException(name, "PciPassthrough", address.ToString(), $"VM '{name}' already has PCI device {address}");
        return d with { PciPassthrough = new ValueList<PciAddress>(d.PciPassthrough.Concat(addresses.Distinct())) };
    });

    /// <summary>Removes PCI functions; one the VM does not have is <see cref="VmDeviceNotFoundException"/>.</summary>
    public ChangeResult RemovePciPassthrough(string name, IReadOnlyCollection<PciAddress> addresses) => Update(name, d =>
    {
        foreach (var address in addresses)
            if (!d.PciPassthrough.Contains(address))
                throw new VmDeviceNotFoundException(name, "PciPassthrough", address.ToString(), $"VM '{name}' has no PCI device {address}");
        return d with { PciPassthrough = new ValueList<PciAddress>(d.PciPassthrough.Where(a => !addresses.Contains(a))) };
    });

    /// <summary>
    /// Adds vfio-user devices (servers' socket paths, absolute); one already attached is
    /// <see cref="VmDeviceAlreadyAttachedException"/>. A running VM gets them at once (hot-plug, VmManager.PassthroughHotplug.cs).
    /// </summary>
    public ChangeResult AddVfioUserDevices(string name, IReadOnlyCollection<string> socketPaths) => Update(name, d =>
    {
        foreach (var socket in socketPaths)
            if (d.VfioUserDevices.Contains(socket))
                throw new VmDeviceAlreadyAttachedException(name, "VfioUserDevices", socket, $"VM '{name}' already has vfio-user device '{socket}'");
        return d with { VfioUserDevices = new ValueList<string>(d.VfioUserDevices.Concat(socketPaths.Distinct(StringComparer.Ordinal))) };
    });

    /// <summary>Removes vfio-user devices; one the VM does not have is <see cref="VmDeviceNotFoundException"/>.</summary>
    public ChangeResult RemoveVfioUserDevices(string name, IReadOnlyCollection<string> socketPaths) => Update(name, d =>
    {
        foreach (var socket in socketPaths)
            if (!d.VfioUserDevices.Contains(socket))
                throw new VmDeviceNotFoundException(name, "VfioUserDevices", socket, $"VM '{name}' has no vfio-user device '{socket}'");
        return d with { VfioUserDevices = new ValueList<string>(d.VfioUserDevices.Where(s => !socketPaths.Contains(s))) };
    });
}
