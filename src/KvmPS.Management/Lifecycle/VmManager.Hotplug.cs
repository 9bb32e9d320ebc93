using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>
/// Disks and network adapters of a running VM: hot-plugged through its VMM (<c>device.add</c>, <c>device.remove</c>:
/// ACPI PCI hot-plug, docs/acpi.md) by <see cref="Update"/>, so the cmdlets, the CLI and the reconciler share one path.
/// </summary>
public sealed partial class VmManager
{
    /// <summary>What to do when the running VMM cannot hot-plug devices (said by errors and by <c>--live</c> refusals).</summary>
    internal const string HotplugMissingAdvice =
        "the running VM's kvmps-vmm cannot hot-plug disks or network adapters; stop the VM and change it then, " +
        "or store the change for the next start only (-Config; kvmps: --config)";

    private static bool IsDeviceList(string property) => property is "Disks" or "NetworkAdapters" or "VfioUserDevices" or "PciPassthrough";

    /// <summary>The VMM lists both hot-plug requests (a VMM from before them does not; one that lists them may still refuse them).</summary>
    private static bool SupportsDeviceHotplug(DescribeReply description) =>
        description.Requests.Contains(DeviceAddRequest.Name) && description.Requests.Contains(DeviceRemoveRequest.Name);

    /// <summary>
    /// Hot-plugs the disk and network-adapter changes from <paramref name="before"/> to <paramref name="after"/>:
    /// removals first (they free PCI slots), then additions, each built by <see cref="VmmConfigBuilder"/> exactly as a
    /// start would build it. The VMM's <c>describe</c> says which PCI function holds a device (a disk by its image path,
    /// an adapter by its MAC): a removed entry the VM does not have was never plugged (stored with --config) and needs
    /// nothing live; an added entry it already has is not plugged twice. Removals are requested here without waiting: the
    /// devices the guest has not ejected yet are returned, and kept in the definition returned for storing, for
    /// <see cref="FinishRemovals"/>. On any failure the definition the VM now has (the steps done so far) is stored
    /// before the error is thrown. Caller holds the store lock.
    /// </summary>
    private (VmDefinition Stored, IReadOnlyList<PendingRemoval> Ejecting) ApplyDevicesLive(string name, VmDefinition before, VmDefinition after)
    {
        // Before the VMM is asked anything: a path the store would refuse to record must not reach the running VM either.
        Store.CheckPaths(after);
        var disks = new DeviceListProgress<DiskDefinition>(before.Disks, after.Disks, DeviceChange.DiskKey);
        var adapters = new DeviceListProgress<NetworkAdapterDefinition>(before.NetworkAdapters, after.NetworkAdapters, DeviceChange.AdapterKey);
        var passthrough = new PassthroughProgress(before, after);
        var ejecting = new List<PendingRemoval>();
        try
        {
            using var client = VmmClient.Connect(Store.SocketPath(name), Options.QueryTimeout, Options.QueryTimeout);
            var live = client.Describe().Devices.ToList();
            string DiskPath(string path) => Store.ResolveDiskPath(name, path);

            // Removals only ask the guest here (no wait): it ejects in its own time, waited for outside the store lock.
            foreach (var disk in disks.Removed)
            {
                if (FindBlockDevice(live, DiskPath(disk.Path)) is { } device && !RemoveDevice(client, name, "Disks", disk.Path, device.Pci, TimeSpan.Zero))
                    ejecting.Add(new PendingRemoval("Disks", disk.Path, device.Pci));
                else
                    disks.Done(disk);
            }
            foreach (var adapter in adapters.Removed)
            {
                var mac = adapter.MacAddress.ToString();
                if (FindNetDevice(live, adapter.MacAddress) is { } device && !RemoveDevice(client, name, "NetworkAdapters", mac, device.Pci, TimeSpan.Zero))
                    ejecting.Add(new PendingRemoval("NetworkAdapters", mac, device.Pci));
                else
                    adapters.Done(adapter);
            }
            RemovePassthroughLive(client, name, live, passthrough, ejecting);
            foreach (var (disk, index) in disks.Added)
            {
                if (FindBlockDevice(live, DiskPath(disk.Path)) is null)
                {
                    var created = CreateMissingImage(name, disk, index);
                    try
                    {
                        var spec = VmmConfigBuilder.DiskDevice(after, index, DiskPath);
                        // Opened here and passed (a jailed VMM may neither see nor open it; docs/vmm.md "Passing open files").
                        live.Add(AddDevice(client, name, "Disks", disk.Path, spec with { Serial = FreeDiskSerial(name, index, live) }, () => VmmPassedFiles.OpenDisk(spec)));
                    }
                    catch when (created is not null)
                    {
                        TryDeleteFile(created);
                        throw;
                    }
                }
                disks.Done(disk);
            }
            foreach (var (adapter, index) in adapters.Added)
            {
                if (FindNetDevice(live, adapter.MacAddress) is null)
                {
                    if (adapter.NetworkName is { } network)
                        new Networks.NetworkManager(Store).EnsureUsable(name, network);
                    var spec = VmmConfigBuilder.NetworkAdapterDevice(after, index, adapter.TapName is null ? FreeGeneratedTap(name, index, live, after) : null,
                        n => Networks.NetworkRegistry.BridgeFor(Store.Root, n));
                    // For a VMM that is not root (jailed), the tap is made and set up here (CAP_NET_ADMIN) and passed; a
                    // root VMM makes its own, as at a start (no host tap is made for a VMM that may refuse the device).
                    live.Add(AddDevice(client, name, "NetworkAdapters", adapter.MacAddress.ToString(), spec,
                        UnprivilegedVmmPid(name) is int vmmPid ? () => VmmPassedFiles.OpenTap(spec, vmmPid) : () => []));
                }
                adapters.Done(adapter);
            }
            AddPassthroughLive(client, name, after, live, passthrough);
        }
        catch (Exception) when (disks.AnyDone || adapters.AnyDone || passthrough.AnyDone)
        {
            StoreWhatTheVmHas(before, passthrough.Current(after with
            {
                Disks = new ValueList<DiskDefinition>(disks.Current()),
                NetworkAdapters = new ValueList<NetworkAdapterDefinition>(adapters.Current()),
            }));
            throw;
        }
        var stored = ejecting.Count == 0 ? after : passthrough.Current(after with
        {
            Disks = new ValueList<DiskDefinition>(disks.Current()),
            NetworkAdapters = new ValueList<NetworkAdapterDefinition>(adapters.Current()),
        });
        return (stored, ejecting);
    }

    /// <summary>The VM's VMM process id when it runs as another user than root (jailed): it cannot make taps itself.</summary>
    private int? UnprivilegedVmmPid(string name)
    {
        if (VmRuntimeProbe.ReadPidFile(Store.PidPath(name)) is not int pid)
            return null;
        try
        {
            var uid = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal))?.Split('\t', StringSplitOptions.RemoveEmptyEntries);
            return uid is { Length: > 2 } && uid[2] != "0" ? pid : null; // the effective uid
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>A device whose eject the guest was asked for and has not finished yet.</summary>
    private sealed record PendingRemoval(string Property, string Device, string Pci);

    /// <summary>
    /// Waits (without the store lock) up to <paramref name="timeout"/> for the guest to eject the devices
    /// <see cref="Update"/> asked it to (the VMM's <c>describe</c> stops listing a device once the guest ejected it and
    /// the VMM released it), then drops those it released from the definition. The first one it kept is
    /// <see cref="VmDeviceRemovalTimeoutException"/>; it stays in the definition, attached and working.
    /// </summary>
    private ChangeResult FinishRemovals(ChangeResult result, IReadOnlyList<PendingRemoval> ejecting, TimeSpan timeout)
    {
        var name = result.Name;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var waiting = ejecting.ToList();
        var released = new List<PendingRemoval>();
        try
        {
            using var client = VmmClient.Connect(Store.SocketPath(name), Options.QueryTimeout, Options.QueryTimeout);
            while (true)
            {
                var listed = client.Describe().Devices.Select(d => d.Pci).ToHashSet(StringComparer.Ordinal);
                released.AddRange(waiting.Where(p => !listed.Contains(p.Pci)));
                waiting.RemoveAll(p => !listed.Contains(p.Pci));
                if (waiting.Count == 0 || clock.Elapsed >= timeout)
                    break;
                Thread.Sleep(20);
            }
        }
        catch (VmmNotRunningException e)
        {
            throw new VmStateException(name, VmState.Off, $"VM '{name}' stopped while its guest was asked to release {HotplugText.Device(waiting[0].Property, waiting[0].Device)}; the definition keeps it", e);
        }
        var kept = waiting.FirstOrDefault();
        VmDefinition stored;
        using (Store.Lock())
        {
            var current = Store.Get(name);
            bool Released(string property, string key) => released.Any(r => r.Property == property && r.Device == key);
            stored = current with
            {
                Disks = new ValueList<DiskDefinition>(current.Disks.Where(d => !Released("Disks", DeviceChange.DiskKey(d)))),
                NetworkAdapters = new ValueList<NetworkAdapterDefinition>(current.NetworkAdapters.Where(a => !Released("NetworkAdapters", DeviceChange.AdapterKey(a)))),
                VfioUserDevices = new ValueList<string>(current.VfioUserDevices.Where(s => !Released("VfioUserDevices", s))),
                PciPassthrough = new ValueList<PciAddress>(current.PciPassthrough.Where(a => !Released("PciPassthrough", DeviceChange.PciKey(a)))),
            };
            if (stored != current)
                Store.UpdateWhileLocked(stored.Validate());
            // Host functions the guest released go back to their own drivers.
            foreach (var gone in released.Where(r => r.Property == "PciPassthrough"))
                GiveBackHostFunction(name, gone.Device);
        }
        if (kept is not null)
            throw new VmDeviceRemovalTimeoutException(name, kept.Property, kept.Device, kept.Pci, timeout);
        return result with { After = stored };
    }

    /// <summary>
    /// A disk a manifest adds with <see cref="DiskDefinition.SizeBytes"/> whose image does not exist yet is created
    /// before it is hot-plugged, as <see cref="New"/> creates it for a new VM. Returns the path created, or null.
    /// </summary>
    private string? CreateMissingImage(string name, DiskDefinition disk, int index)
    {
        var path = Store.ResolveDiskPath(name, disk.Path);
        if (disk.SizeBytes is null || File.Exists(path) || DiskImageCreator is null)
            return null;
        var backing = disk.BackingImagePath is null ? null : Store.ResolveDiskPath(name, disk.BackingImagePath);
        var directory = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(directory))
            StoreConfinement.CreateDirectory(directory);
        DiskImageCreator.CreateImage(new DiskImageRequest(name, index, disk, path, backing), null);
        return path;
    }

    /// <summary>After a device step failed part-way: the definition with the steps that were done. One the schema refuses stays as it was.</summary>
    private void StoreWhatTheVmHas(VmDefinition before, VmDefinition partial)
    {
        if (partial == before)
            return;
        try
        {
            Store.UpdateWhileLocked(partial.Validate());
        }
        catch (VmDefinitionException)
        {
            // e.g. a firmware boot disk index that only the full change made valid: the old definition stays.
        }
    }

    /// <summary>device.add with the files <paramref name="open"/> opens for the device (closed here once answered).</summary>
    private static DeviceDescription AddDevice(VmmClient client, string name, string property, string device, DeviceSpec spec,
        Func<IReadOnlyList<System.Runtime.InteropServices.SafeHandle>> open)
    {
        IReadOnlyList<System.Runtime.InteropServices.SafeHandle> files;
        try
        {
            files = open();
        }
        catch (PassedFileException e)
        {
            throw new VmDeviceHotplugRefusedException(name, property, device, "adding", "OpenFailed", e.Message, e);
        }
        try
        {
            return client.AddDevice(spec, files).Device;
        }
        catch (VmmRequestException e) when (e.Code == ControlErrorCodes.InvalidArgument && (e.VmmMessage.Contains("unknown field 'passed_files'", StringComparison.Ordinal)
            || e.VmmMessage.Contains($"a {spec.Type} device takes no passed files", StringComparison.Ordinal)))
        {
            // A VMM from before passed files (or before they were taken for this device type, as vfio-user): it opens
            // the path itself, as it did then (a tap made here must be closed first, or the VMM's TUNSETIFF finds it busy).
            VmmPassedFiles.Close(files);
            return AddDevice(client, name, property, device, spec);
        }
        catch (VmmRequestException e) when (e.Code == ControlErrorCodes.UnknownRequest)
        {
            throw new VmDeviceHotplugNotSupportedException(name, property, device, e);
        }
        catch (VmmRequestException e)
        {
            throw new VmDeviceHotplugRefusedException(name, property, device, "adding", e.Code, e.VmmMessage, e);
        }
        catch (VmmNotRunningException e)
        {
            throw new VmStateException(name, VmState.Off, $"VM '{name}' stopped meanwhile; {HotplugText.Device(property, device)} was not added", e);
        }
        finally
        {
            VmmPassedFiles.Close(files);
        }
    }

    private static DeviceDescription AddDevice(VmmClient client, string name, string property, string device, DeviceSpec spec)
    {
        try
        {
            return client.AddDevice(spec).Device;
        }
        catch (VmmRequestException e) when (e.Code == ControlErrorCodes.UnknownRequest)
        {
            throw new VmDeviceHotplugNotSupportedException(name, property, device, e);
        }
        catch (VmmRequestException e)
        {
            throw new VmDeviceHotplugRefusedException(name, property, device, "adding", e.Code, e.VmmMessage, e);
        }
        catch (VmmNotRunningException e)
        {
            throw new VmStateException(name, VmState.Off, $"VM '{name}' stopped meanwhile; {HotplugText.Device(property, device)} was not added", e);
        }
    }

    /// <summary>Asks the guest to eject the device and waits up to <paramref name="timeout"/>; true once it is removed.</summary>
    private static bool RemoveDevice(VmmClient client, string name, string property, string device, string pci, TimeSpan timeout)
    {
        DeviceRemoveReply reply;
        try
        {
            reply = client.RemoveDevice(pci, timeout);
        }
        catch (VmmRequestException e) when (e.Code == ControlErrorCodes.UnknownRequest)
        {
            throw new VmDeviceHotplugNotSupportedException(name, property, device, e);
        }
        catch (VmmRequestException e)
        {
            throw new VmDeviceHotplugRefusedException(name, property, device, "removing", e.Code, e.VmmMessage, e);
        }
        catch (VmmNotRunningException e)
        {
            throw new VmStateException(name, VmState.Off, $"VM '{name}' stopped meanwhile; {HotplugText.Device(property, device)} was not removed", e);
        }
        return string.Equals(reply.State, DeviceRemoveReply.Removed, StringComparison.Ordinal);
    }

    private static DeviceDescription? FindBlockDevice(IEnumerable<DeviceDescription> devices, string fullPath) =>
        devices.FirstOrDefault(d => d.Type == BlockDeviceSpec.TypeName && string.Equals(Option(d, "path"), fullPath, StringComparison.Ordinal));

    private static DeviceDescription? FindNetDevice(IEnumerable<DeviceDescription> devices, MacAddress mac) =>
        devices.FirstOrDefault(d => d.Type == NetDeviceSpec.TypeName && Option(d, "mac") is { } text && SameMac(text, mac));

    private static bool SameMac(string text, MacAddress mac)
    {
        try
        {
            return MacAddress.Parse(text) == mac;
        }
        catch (ValueFormatException)
        {
            return false;
        }
    }

    private static string? Option(DeviceDescription device, string key) =>
        device.Options is { } options && options.TryGetValue(key, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    /// <summary>
    /// The tap for a hot-added adapter that names only a bridge: the generated name for its position, or the next
    /// generated one when a device of the running VM still has that name (its position shifted after a removal).
    /// </summary>
    private static string FreeGeneratedTap(string name, int index, IEnumerable<DeviceDescription> live, VmDefinition after)
    {
        var taken = live.Where(d => d.Type == NetDeviceSpec.TypeName).Select(d => Option(d, "tap")).OfType<string>()
            .Concat(after.NetworkAdapters.Select(a => a.TapName).OfType<string>())
            .ToHashSet(StringComparer.Ordinal);
        for (var i = index; ; i++)
            if (!taken.Contains(VmmConfigBuilder.GeneratedTapName(name, i)))
                return VmmConfigBuilder.GeneratedTapName(name, i);
    }

    /// <summary>
    /// The serial for a hot-added disk: the one for its position, or the next "NAME-dN" when a disk of the running VM
    /// still has it (positions shift after a removal), so no two disks the guest sees share a serial.
    /// </summary>
    private static string FreeDiskSerial(string name, int index, IEnumerable<DeviceDescription> live)
    {
        var taken = live.Where(d => d.Type == BlockDeviceSpec.TypeName).Select(d => Option(d, "serial")).OfType<string>()
            .ToHashSet(StringComparer.Ordinal);
        for (var i = index; ; i++)
            if (!taken.Contains(VmmConfigBuilder.DiskSerial(name, i)))
                return VmmConfigBuilder.DiskSerial(name, i);
    }

    /// <summary>One device list on its way from its old to its new entries, step by step.</summary>
    private sealed class DeviceListProgress<T>(IReadOnlyList<T> before, IReadOnlyList<T> after, Func<T, string> key)
    {
        private readonly HashSet<string> _done = new(StringComparer.Ordinal);

        public IReadOnlyList<T> Removed { get; } = DeviceChange.Removed(before, after, key);
        public IReadOnlyList<(T Entry, int Index)> Added { get; } = DeviceChange.Added(before, after, key);
        public bool AnyDone => _done.Count > 0;

        public void Done(T entry) => _done.Add(key(entry));

        /// <summary>The list as the VM has it now: the new entries without those not added yet, plus the old ones not removed yet.</summary>
        public IEnumerable<T> Current()
        {
            var added = Added.Select(a => key(a.Entry)).ToHashSet(StringComparer.Ordinal);
            var removed = Removed.Select(key).ToHashSet(StringComparer.Ordinal);
            return after.Where(x => !added.Contains(key(x)) || _done.Contains(key(x)))
                .Concat(before.Where(x => removed.Contains(key(x)) && !_done.Contains(key(x))));
        }
    }
}
