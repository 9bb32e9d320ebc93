using KvmPS.Management.Definitions;

namespace KvmPS.Management.HostDevices;

/// <summary>
/// One host function at a time for a running VM (hot-plug): bound to vfio-pci right before the VMM's <c>device.add</c>
/// and given back after the guest ejected it, through the same binding record a start writes (so a crash in between is
/// repaired by the next <see cref="PciPassthroughHost.ReleaseAfterStop(string)"/>).
/// </summary>
public sealed partial class PciPassthroughHost
{
    /// <summary>
    /// Checks <paramref name="address"/> for the running VM whose definition becomes <paramref name="after"/> as
    /// <see cref="PrepareForStart(VmDefinition, string, IEnumerable{PciAssignment})"/> checks a start's functions (it
    /// exists, another VM does not hold it, its IOMMU group, the host does not use it), records it in the VM's binding
    /// record and binds it. A refusal is a <see cref="PciPassthroughException"/>, a failed bind a
    /// <see cref="PciBindingException"/>; either way nothing stays rebound or recorded. A function the record already
    /// holds for this VM is not bound twice.
    /// </summary>
    public PciBindingRecord BindForHotplug(Store.VmStore store, VmDefinition after, PciAddress address)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(after);
        var folder = store.VmDirectory(after.Name);
        var existing = ReadState(StatePath(folder)) ?? [];
        if (existing.FirstOrDefault(r => r.Address == address) is { } held)
            return held;
        var heldElsewhere = ReadAssignments(store.ListNames().Where(n => n != after.Name).Select(n => (n, store.VmDirectory(n))))
            .GroupBy(a => a.Address).ToDictionary(g => g.Key, g => g.First().VmName);
        if (heldElsewhere.TryGetValue(address, out var vm))
            throw new PciPassthroughException(address, $"it is already assigned to VM '{vm}'; stop that VM or remove the device from it first.");
        var device = host.TryRead(address)
            ?? throw new PciPassthroughException(address, $"this host has no such device (not in {host.DevicesDirectory}).");
        CheckGroup(device, HostFunctions(after).Distinct().ToList(), heldElsewhere);
        PciHostUse.Check(host, device);
        // Recorded first, as at a start: a crash while binding leaves the record of the function that may have moved.
        WriteState(folder, [.. existing, new PciBindingRecord(address, device.Driver)]);
        try
        {
            return _binding.Bind(address);
        }
        catch
        {
            if (existing.Count == 0) TryDelete(StatePath(folder));
            else WriteState(folder, existing);
            throw;
        }
    }

    /// <summary>
    /// Gives <paramref name="address"/> back to the driver the VM's binding record names and drops it from the record
    /// (deleted when it was the last). Nothing to do when the record does not hold it. A failed return is a
    /// <see cref="PciBindingException"/> and the record keeps it, for the release after the VM stops.
    /// </summary>
    public void ReleaseAfterUnplug(string vmFolder, PciAddress address)
    {
        var path = StatePath(vmFolder);
        var records = ReadState(path);
        if (records?.FirstOrDefault(r => r.Address == address) is not { } record)
            return;
        _binding.Return(record);
        var rest = records.Where(r => r.Address != address).ToList();
        if (rest.Count == 0) TryDelete(path);
        else WriteState(vmFolder, rest);
    }
}
