using KvmPS.Management.Definitions;

namespace KvmPS.Management.HostDevices;

/// <summary>A host PCI function held by a VM (bound to vfio-pci for it).</summary>
public sealed record PciAssignment(string VmName, PciAddress Address);

/// <summary>
/// The host side of a VM's kernel-VFIO passthrough, called around the VMM's life: <see cref="PrepareForStart"/>
/// before the VMM is launched binds every <see cref="VmDefinition.PciPassthrough"/> function and every SR-IOV network
/// adapter's VF (<see cref="NetworkAdapterDefinition.SriovVf"/>, after setting its MAC and VLAN on the physical
/// function over netlink) to vfio-pci;
/// <see cref="ReleaseAfterStop"/> after it has exited gives them back, and puts back each VF's MAC and VLAN as they were
/// before. What was changed is kept in <see cref="StateFileName"/> and <see cref="VfStateFileName"/> in the VM's
/// folder, written before anything is changed, so a crash at any point is repaired by the next ReleaseAfterStop (it is
/// idempotent and a VM without the files has nothing to give back).
/// </summary>
public sealed partial class PciPassthroughHost(PciHostDevices host, ISysfsWriter writer, IVfNetlink? netlink = null)
{
    /// <summary>One line per function: its address and the driver to give it back to ("-" for none).</summary>
    public const string StateFileName = "pci-bindings";
    /// <summary>One line per SR-IOV adapter's VF: its PF's interface, its index, and its MAC and VLAN before the VM's were set.</summary>
    public const string VfStateFileName = "vf-settings";

    private readonly PciDriverBinding _binding = new(host, writer);
    private readonly IVfNetlink _netlink = netlink ?? KernelVfNetlink.Instance;

    public PciPassthroughHost() : this(new PciHostDevices(), SysfsWriter.Instance) { }

    public static string StatePath(string vmFolder) => Path.Combine(vmFolder, StateFileName);
    public static string VfStatePath(string vmFolder) => Path.Combine(vmFolder, VfStateFileName);

    /// <summary>The host functions a VM gets with kernel VFIO: its PciPassthrough, then its SR-IOV network adapters' VFs.</summary>
    public static IEnumerable<PciAddress> HostFunctions(VmDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        return definition.PciPassthrough.Concat(definition.NetworkAdapters.Select(a => a.SriovVf).OfType<PciAddress>());
    }

    /// <summary>A VF adapter's VF with what <c>ip link set PF vf N</c> needs: the PF's interface and the VF's index.</summary>
    private sealed record VfSetting(NetworkAdapterDefinition Adapter, PciAddress Vf, string PhysicalInterface, int Index);

    /// <summary>
    /// Where each SR-IOV adapter's MAC and VLAN go: refuses (naming the VF) an address that is no VF, or whose physical
    /// function has no network interface to send the request for (its driver is not bound).
    /// </summary>
    private List<VfSetting> ResolveVfAdapters(VmDefinition definition)
    {
        var settings = new List<VfSetting>();
        var sriov = new HostSriov(host, writer);
        foreach (var adapter in definition.NetworkAdapters)
        {
            if (adapter.SriovVf is not { } vf)
                continue;
            var found = sriov.FindVirtualFunction(vf)
                ?? throw new PciPassthroughException(vf, "it is not an SR-IOV virtual function of a physical function on this host (no physfn link, or not listed as its virtfnN); a VF network adapter needs one (Set-KvmHostSriov).");
            var nic = sriov.NetworkInterface(found.PhysicalFunction)
                ?? throw new PciPassthroughException(vf, $"its physical function {found.PhysicalFunction} has no network interface (net/ in sysfs), so its MAC and VLAN cannot be set; bind the PF's network driver first.");
            settings.Add(new VfSetting(adapter, vf, nic, found.Index));
        }
        return settings;
    }

    /// <summary>
    /// Checks every passthrough function of <paramref name="definition"/> and binds them to vfio-pci. All checks run
    /// before anything is rebound: a missing device, one the host uses, one held by another VM
    /// (<paramref name="otherVms"/>, see <see cref="ReadAssignments"/>) or one whose IOMMU group holds a device bound
    /// to a host driver and not passed to this VM is a <see cref="PciPassthroughException"/>, and so is an SR-IOV
    /// adapter's address that is no VF or whose PF has no network interface. Then each SR-IOV adapter's MAC and VLAN are
    /// set on its PF, after its previous MAC and VLAN are read and recorded (a refusal is a
    /// <see cref="VfNetlinkException"/>, nothing rebound, the VFs already set put back). If a bind fails, the ones
    /// already bound are given back and the VFs' settings put back before the <see cref="PciBindingException"/> propagates.
    /// </summary>
    public IReadOnlyList<PciBindingRecord> PrepareForStart(VmDefinition definition, string vmFolder, IEnumerable<PciAssignment> otherVms)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var wanted = HostFunctions(definition).Distinct().ToList();
        if (wanted.Count == 0)
            return Array.Empty<PciBindingRecord>();
        var heldElsewhere = otherVms.GroupBy(a => a.Address).ToDictionary(g => g.Key, g => g.First().VmName);
        var records = new List<PciBindingRecord>();
        foreach (var address in wanted)
        {
            if (heldElsewhere.TryGetValue(address, out var vm))
                throw new PciPassthroughException(address, $"it is already assigned to VM '{vm}'; stop that VM or remove the device from it first.");
            var device = host.TryRead(address)
                ?? throw new PciPassthroughException(address, $"this host has no such device (not in {host.DevicesDirectory}).");
            CheckGroup(device, wanted, heldElsewhere);
            PciHostUse.Check(host, device);
            records.Add(new PciBindingRecord(address, device.Driver));
        }
        var vfSettings = ResolveVfAdapters(definition);
        // What each VF had before, read before anything changes (a PF that cannot say refuses the start, nothing changed).
        var previous = vfSettings.Select(v => new VfRecord(v.PhysicalInterface, v.Index, _netlink.GetVf(v.PhysicalInterface, v.Index))).ToList();
        // Written first: a crash while binding leaves the record of every function that may have moved and every VF
        // setting that may have changed.
        WriteState(vmFolder, records);
        WriteVfState(vmFolder, previous);
        var bound = new List<PciBindingRecord>();
        int set = 0;
        try
        {
            // The MAC and VLAN before the VF moves to vfio-pci, as libvirt does: the PF enforces them for the VF, and the
            // guest's VF driver reads the MAC the PF assigned when it probes the device.
            foreach (var setting in vfSettings)
            {
                _netlink.SetVf(setting.PhysicalInterface, setting.Index, setting.Adapter.MacAddress.GetOctets(), setting.Adapter.VlanId ?? 0);
                set++;
            }
            foreach (var record in records)
                bound.Add(_binding.Bind(record.Address));
        }
        catch
        {
            foreach (var record in bound.AsEnumerable().Reverse())
                TryReturn(record);
            foreach (var vf in previous.Take(set))
                TryRestore(vf);
            TryDelete(StatePath(vmFolder));
            TryDelete(VfStatePath(vmFolder));
            throw;
        }
        return bound;
    }

    /// <summary>
    /// <see cref="PrepareForStart(VmDefinition, string, IEnumerable{PciAssignment})"/> for a VM of
    /// <paramref name="store"/>: its folder holds the record, and every other VM's folder is read for what it holds
    /// (a record exists only from a start to the release after its VMM exits).
    /// </summary>
    public IReadOnlyList<PciBindingRecord> PrepareForStart(Store.VmStore store, VmDefinition definition) =>
        !HostFunctions(definition).Any()
            ? Array.Empty<PciBindingRecord>()
            : PrepareForStart(definition, store.VmDirectory(definition.Name),
                ReadAssignments(store.ListNames().Where(n => n != definition.Name).Select(n => (n, store.VmDirectory(n)))));

    /// <summary><see cref="ReleaseAfterStop(string)"/> for the VM <paramref name="name"/> of <paramref name="store"/>.</summary>
    public void ReleaseAfterStop(Store.VmStore store, string name) => ReleaseAfterStop(store.VmDirectory(name));

    /// <summary>
    /// Gives back every function <see cref="PrepareForStart"/> bound for the VM in <paramref name="vmFolder"/> and puts
    /// back the MAC and VLAN its VFs had, then deletes the records. Nothing to do without them. Every function and VF is
    /// tried; the first failure is thrown after (the records then keep the ones not given back, for the next call).
    /// </summary>
    public void ReleaseAfterStop(string vmFolder)
    {
        Exception? failure = null;
        try { ReleaseBindings(vmFolder); }
        catch (PciBindingException e) { failure = e; }
        try { RestoreVfSettings(vmFolder); }
        catch (VfNetlinkException e) { failure ??= e; }
        if (failure is not null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
    }

    /// <summary>A VF's settings before the VM: what <see cref="ReleaseAfterStop(string)"/> puts back.</summary>
    private sealed record VfRecord(string PhysicalInterface, int Index, VfSettings Settings);

    /// <summary>Puts back every VF's MAC and VLAN recorded at start (after the VF is back with its host driver, as libvirt does).</summary>
    private void RestoreVfSettings(string vmFolder)
    {
        var path = VfStatePath(vmFolder);
        var records = ReadVfState(path);
        if (records is null)
            return;
        var failed = new List<VfRecord>();
        VfNetlinkException? first = null;
        foreach (var record in records)
        {
            try { Restore(record); }
            catch (VfNetlinkException e)
            {
                failed.Add(record);
                first ??= e;
            }
        }
        if (first is null)
        {
            TryDelete(path);
            return;
        }
        WriteVfState(vmFolder, failed);
        throw first;
    }

    private void Restore(VfRecord record) =>
        _netlink.SetVf(record.PhysicalInterface, record.Index, record.Settings.Mac, record.Settings.Vlan);

    private void TryRestore(VfRecord record)
    {
        try { Restore(record); }
        catch (VfNetlinkException) { /* the start's failure is the error to report */ }
    }

    private static void WriteVfState(string vmFolder, IReadOnlyCollection<VfRecord> records)
    {
        var path = VfStatePath(vmFolder);
        if (records.Count == 0)
        {
            TryDelete(path);
            return;
        }
        var temporary = path + ".tmp";
        File.WriteAllLines(temporary, records.Select(r => $"{r.PhysicalInterface} {r.Index} {VfNetlink.FormatMac(r.Settings.Mac)} {r.Settings.Vlan}"));
        File.Move(temporary, path, overwrite: true);
    }

    private static IReadOnlyList<VfRecord>? ReadVfState(string path)
    {
        string[] lines;
        try { lines = File.ReadAllLines(path); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return null; }
        var records = new List<VfRecord>();
        foreach (var line in lines)
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0) continue;
            try
            {
                if (parts.Length != 4) throw new FormatException();
                records.Add(new VfRecord(parts[0], int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture),
                    new VfSettings(VfNetlink.ParseMac(parts[2]), int.Parse(parts[3], System.Globalization.CultureInfo.InvariantCulture))));
            }
            catch (Exception e) when (e is FormatException or OverflowException) { throw new InvalidDataException($"{path}: line '{line}' is not 'PF-INTERFACE VF-INDEX MAC VLAN'."); }
        }
        return records;
    }

    private void ReleaseBindings(string vmFolder)
    {
        var path = StatePath(vmFolder);
        var records = ReadState(path);
        if (records is null)
            return;
        var failed = new List<PciBindingRecord>();
        PciBindingException? first = null;
        foreach (var record in records)
        {
            try { _binding.Return(record); }
            catch (PciBindingException e)
            {
                failed.Add(record);
                first ??= e;
            }
        }
        if (first is null)
        {
            TryDelete(path);
            return;
        }
        WriteState(vmFolder, failed);
        throw first;
    }

    /// <summary>The functions held by other VMs, read from their folders' binding records (the caller names the VMs).</summary>
    public static IReadOnlyList<PciAssignment> ReadAssignments(IEnumerable<(string VmName, string VmFolder)> vms)
    {
        var result = new List<PciAssignment>();
        foreach (var (name, folder) in vms)
            foreach (var record in ReadState(StatePath(folder)) ?? [])
                result.Add(new PciAssignment(name, record.Address));
        return result;
    }

    private void CheckGroup(PciHostDevice device, IReadOnlyCollection<PciAddress> passed, IReadOnlyDictionary<PciAddress, string> heldElsewhere)
    {
        if (device.IommuGroup is not int group)
            throw new PciPassthroughException(device.Address, "it has no IOMMU group: the IOMMU is off (enable VT-d/AMD-Vi and boot with intel_iommu=on or amd_iommu=on).");
        foreach (var member in device.IommuGroupMembers)
        {
            if (member == device.Address || passed.Contains(member)) continue;
            if (heldElsewhere.TryGetValue(member, out var vm))
                throw new PciPassthroughException(device.Address,
                    $"IOMMU group {group} also holds {member}, which is assigned to VM '{vm}'; a group can only go to one VM.");
            var other = host.TryRead(member);
            if (other is null || other.Driver is null || (other.ClassCode >> 8) == 0x0604) continue; // gone, driverless, or a bridge
            throw new PciPassthroughException(device.Address,
                $"IOMMU group {group} also holds {member} ({other.ClassName}), bound to {other.Driver} and not passed to this VM; " +
                "pass the whole group through or unbind the other members.");
        }
    }

    private void TryReturn(PciBindingRecord record)
    {
        try { _binding.Return(record); }
        catch (PciBindingException) { /* the bind failure is the error to report */ }
    }

    private static void WriteState(string vmFolder, IEnumerable<PciBindingRecord> records)
    {
        var path = StatePath(vmFolder);
        var temporary = path + ".tmp";
        File.WriteAllLines(temporary, records.Select(r => $"{r.Address} {r.OriginalDriver ?? "-"}"));
        File.Move(temporary, path, overwrite: true);
    }

    private static IReadOnlyList<PciBindingRecord>? ReadState(string path)
    {
        string[] lines;
        try { lines = File.ReadAllLines(path); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return null; }
        var records = new List<PciBindingRecord>();
        foreach (var line in lines)
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0) continue;
            PciAddress address;
            try { address = parts.Length == 2 ? PciAddress.Parse(parts[0]) : throw new FormatException(); }
            catch (FormatException) { throw new InvalidDataException($"{path}: line '{line}' is not 'ADDRESS DRIVER'."); }
            records.Add(new PciBindingRecord(address, parts[1] == "-" ? null : parts[1]));
        }
        return records;
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
    }
}
