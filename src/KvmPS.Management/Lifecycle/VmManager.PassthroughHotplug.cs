using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>
/// Passthrough devices of a running VM (<see cref="VmDefinition.VfioUserDevices"/>, <see cref="VmDefinition.PciPassthrough"/>):
/// hot-plugged through the VMM's <c>device.add</c>/<c>device.remove</c> like disks (<see cref="ApplyDevicesLive"/>). A
/// host function (kernel VFIO) is checked and bound to vfio-pci for the VM right before its <c>device.add</c> (recorded in
/// the VM's binding record, as a start records it) and given back to its driver once the guest has ejected it. Kernel VFIO
/// has not run on real hardware here (docs/passthrough-host.md); vfio-user is tested end to end.
/// </summary>
public sealed partial class VmManager
{
    /// <summary>The host side of kernel-VFIO passthrough (sysfs binding); tests give one over a fake sysfs tree.</summary>
    public Func<PciPassthroughHost> PassthroughHostFactory { get; init; } = () => new PciPassthroughHost();

    /// <summary>The two passthrough lists of one change, step by step.</summary>
    private sealed class PassthroughProgress(VmDefinition before, VmDefinition after)
    {
        public DeviceListProgress<string> Sockets { get; } = new(before.VfioUserDevices, after.VfioUserDevices, s => s);
        public DeviceListProgress<PciAddress> Functions { get; } = new(before.PciPassthrough, after.PciPassthrough, DeviceChange.PciKey);
        public bool AnyDone => Sockets.AnyDone || Functions.AnyDone;

        /// <summary><paramref name="definition"/> with the passthrough lists as the VM has them now.</summary>
        public VmDefinition Current(VmDefinition definition) => definition with
        {
            VfioUserDevices = new ValueList<string>(Sockets.Current()),
            PciPassthrough = new ValueList<PciAddress>(Functions.Current()),
        };
    }

    /// <summary>Asks the guest to release each removed passthrough device the VM has (no wait; see <see cref="FinishRemovals"/>).</summary>
    private void RemovePassthroughLive(VmmClient client, string name, List<DeviceDescription> live, PassthroughProgress progress, List<PendingRemoval> ejecting)
    {
        foreach (var socket in progress.Sockets.Removed)
        {
            if (FindVfioUserDevice(live, socket) is { } device && !RemoveDevice(client, name, "VfioUserDevices", socket, device.Pci, TimeSpan.Zero))
                ejecting.Add(new PendingRemoval("VfioUserDevices", socket, device.Pci));
            else
                progress.Sockets.Done(socket);
        }
        foreach (var address in progress.Functions.Removed)
        {
            var key = DeviceChange.PciKey(address);
            if (FindVfioDevice(live, address) is { } device)
            {
                if (!RemoveDevice(client, name, "PciPassthrough", key, device.Pci, TimeSpan.Zero))
                {
                    ejecting.Add(new PendingRemoval("PciPassthrough", key, device.Pci));
                    continue;
                }
                GiveBackHostFunction(name, key);
            }
            progress.Functions.Done(address);
        }
    }

    /// <summary>Plugs each added passthrough device the VM does not have yet; a host function is bound to vfio-pci first.</summary>
    private void AddPassthroughLive(VmmClient client, string name, VmDefinition after, List<DeviceDescription> live, PassthroughProgress progress)
    {
        foreach (var (socket, _) in progress.Sockets.Added)
        {
            // Connected here and passed (docs/vmm.md "Passing open files"), jailed VMM or not: a jailed one may not
            // reach the socket, and one path for both keeps an unjailed VMM exercising what a jailed one needs.
            if (FindVfioUserDevice(live, socket) is null)
                live.Add(AddDevice(client, name, "VfioUserDevices", socket, new VfioUserDeviceSpec { Socket = socket }, () => VmmPassedFiles.ConnectVfioUser(socket)));
            progress.Sockets.Done(socket);
        }
        foreach (var (address, _) in progress.Functions.Added)
        {
            if (FindVfioDevice(live, address) is null)
            {
                // Checked (exists, not used by the host, its IOMMU group, not another VM's) and bound, as a start does.
                PassthroughHostFactory().BindForHotplug(Store, after, address);
                try
                {
                    live.Add(AddDevice(client, name, "PciPassthrough", DeviceChange.PciKey(address), new VfioDeviceSpec { Host = address.ToString() }));
                }
                catch
                {
                    GiveBackHostFunction(name, DeviceChange.PciKey(address));
                    throw;
                }
            }
            progress.Functions.Done(address);
        }
    }

    /// <summary>A host function the VM no longer has goes back to the driver it had (a failure stays recorded for the stop's release).</summary>
    private void GiveBackHostFunction(string name, string address)
    {
        try { PassthroughHostFactory().ReleaseAfterUnplug(Store.VmDirectory(name), PciAddress.Parse(address)); }
        catch (PciBindingException) { /* kept in the binding record: ReleaseAfterStop tries again when the VM stops */ }
    }

    private static DeviceDescription? FindVfioUserDevice(IEnumerable<DeviceDescription> devices, string socket) =>
        devices.FirstOrDefault(d => d.Type == VfioUserDeviceSpec.TypeName && string.Equals(Option(d, "socket"), socket, StringComparison.Ordinal));

    private static DeviceDescription? FindVfioDevice(IEnumerable<DeviceDescription> devices, PciAddress address) =>
        devices.FirstOrDefault(d => d.Type == VfioDeviceSpec.TypeName && Option(d, "host") is { } text && SameAddress(text, address));

    private static bool SameAddress(string text, PciAddress address)
    {
        try { return PciAddress.Parse(text) == address; }
        catch (ValueFormatException) { return false; }
    }
}
