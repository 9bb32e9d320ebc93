using System.Globalization;
using System.Text.Json;
using KvmPS.Management.DesiredState;
using KvmPS.Management.HostDevices;

namespace KvmPS.Cli;

/// <summary>The host's sysfs tree for the CLI, and a manifest's HostSriov entries in <c>kvmps get</c> (table and JSON).</summary>
internal static class HostSriovOutput
{
    public static PciHostDevices PciDevices(Func<string, string?> environment) =>
        new(environment(PciHostDevices.SysfsRootVariable) is { Length: > 0 } root ? root : PciHostDevices.DefaultSysfsRoot);

    /// <summary><c>"hostSriov": [ { physicalFunction, desiredVfCount, vfCount (null: no such device), inDesiredState, drift } ]</c>.</summary>
    public static void WriteJson(Utf8JsonWriter w, DesiredHostStatus status)
    {
        w.WriteStartArray("hostSriov");
        foreach (var pf in status.HostSriov)
        {
            w.WriteStartObject();
            w.WriteString("physicalFunction", pf.Name);
            w.WriteNumber("desiredVfCount", pf.Desired.VfCount);
            if (pf.Actual?.SriovNumVfs is { } count)
                w.WriteNumber("vfCount", count);
            else
                w.WriteNull("vfCount");
            w.WriteBoolean("inDesiredState", pf.InDesiredState);
            w.WriteStartArray("drift");
            foreach (var d in pf.Drifts)
                CliOutput.WriteDrift(w, d);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    /// <summary>A second table after the VMs', only when the manifests declare HostSriov.</summary>
    public static void WriteTable(TextWriter output, DesiredHostStatus status)
    {
        if (status.HostSriov.Count == 0)
            return;
        output.WriteLine();
        CliOutput.Table(output, new[] { "PHYSICAL-FUNCTION", "WANTED-VFS", "VFS", "IN-DESIRED-STATE" },
            status.HostSriov.Select(pf => (IReadOnlyList<string>)new[]
            {
                pf.Name,
                pf.Desired.VfCount.ToString(CultureInfo.InvariantCulture),
                // The drift's actual value says why when there is no count to show (no such device, not SR-IOV capable).
                pf.Drifts.Count > 0 ? pf.Drifts[0].Actual ?? "-" : pf.Desired.VfCount.ToString(CultureInfo.InvariantCulture),
                pf.InDesiredState ? "yes" : "no",
            }));
    }
}
