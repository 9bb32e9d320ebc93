using System.Globalization;
using KvmPS.Management.HostDevices;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// Drift and steps for a manifest's <c>HostSriov</c> VF counts. The steps run after the VMs the manifest removes or
/// stops are down (a VF bound to vfio-pci for a VM blocks the change: the kernel destroys and re-creates every VF) and
/// before any VM is updated, created or started, so a VM given a VF finds it. Drift names the PF as
/// <c>HostSriov.DDDD:BB:DD.F</c> with the property VfCount.
/// </summary>
public static class SriovPlanner
{
    public static string Subject(DesiredSriovVfCount entry) => $"{DesiredSriovReader.Key}.{entry.PhysicalFunction}";

    /// <summary>The drift of one entry against the device as it is (null: the host has no such device).</summary>
    public static IReadOnlyList<Drift> DriftOf(DesiredSriovVfCount entry, PciHostDevice? device)
    {
        var actual = device is null ? "(no such device)"
            : device.SriovTotalVfs is null ? "(not SR-IOV capable)"
            : (device.SriovNumVfs ?? 0).ToString(CultureInfo.InvariantCulture);
        var expected = entry.VfCount.ToString(CultureInfo.InvariantCulture);
        return actual == expected ? [] : [new Drift(Subject(entry), "VfCount", expected, actual)];
    }

    /// <summary>
    /// The steps and drift. What no step can fix (no such device, a VF, not SR-IOV capable, more VFs than
    /// <c>sriov_totalvfs</c>) is a <see cref="DesiredStateException"/> naming the entry: a plan must not promise what
    /// apply cannot do. A VF bound to vfio-pci whose VM the plan does not stop is a warning: the step would fail.
    /// </summary>
    public static (List<ReconcileAction> Steps, List<Drift> Drifts, List<string> Warnings) Plan(IReadOnlyList<DesiredSriovVfCount> desired, HostSriov sriov)
    {
        ArgumentNullException.ThrowIfNull(desired);
        ArgumentNullException.ThrowIfNull(sriov);
        var steps = new List<ReconcileAction>();
        var drifts = new List<Drift>();
        var warnings = new List<string>();
        foreach (var entry in desired)
        {
            var where = $"{DesiredSriovReader.Key}['{entry.PhysicalFunction}']";
            PciHostDevice device;
            try
            {
                device = sriov.Check(entry.PhysicalFunction, entry.VfCount, checkVfsInUse: false);
            }
            catch (HostSriovException e)
            {
                throw new DesiredStateException(entry.Position, null, where, e.Message, e);
            }
            var drift = DriftOf(entry, device);
            if (drift.Count == 0)
                continue;
            if (sriov.BoundVirtualFunction(entry.PhysicalFunction) is { } held)
                warnings.Add($"{where}: VF {held.Index} ({held.Address}) is bound to vfio-pci for a VM; unless this plan stops that VM first, " +
                             "setting the VF count fails (the kernel would remove the VF under the VM)");
            drifts.AddRange(drift);
            var nic = sriov.NetworkInterface(entry.PhysicalFunction) is { } name ? $" ({name})" : "";
            steps.Add(new ReconcileAction(ReconcileActionKind.SetSriovVfCount, entry.PhysicalFunction.ToString(),
                $"Set the VF count of {entry.PhysicalFunction}{nic} to {entry.VfCount} (now {drift[0].Actual})",
                "sriov_numvfs differs", drift));
        }
        return (steps, drifts, warnings);
    }
}
