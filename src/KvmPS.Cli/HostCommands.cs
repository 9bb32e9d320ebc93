using System.Globalization;
using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps host pci list</c> and <c>kvmps host sriov set PF N</c>: the host's PCI functions with their SR-IOV state
/// (the twin of Get-KvmHostPciDevice) and the VF count of a physical function (Set-KvmHostSriov). Exit codes: 0,
/// 2 usage, 4 refused or failed (no such device, not SR-IOV capable, too many VFs, the kernel refused).
/// </summary>
internal sealed class HostCommands(CliApp app)
{
    private PciHostDevices Devices() => app.PciDevices();

    public int Host(ArgReader args)
    {
        var area = args.Next();
        var sub = args.Next();
        return (area, sub) switch
        {
            (null, _) => throw new UsageException("host: give a subcommand: pci list, sriov set"),
            ("-h" or "--help", _) or (_, "-h" or "--help") => WriteHelp(),
            ("pci", "list" or "ls") => app.WithHelp("host", () => PciList(args.Parse("--json"))),
            ("sriov", "set") => app.WithHelp("host", () => SriovSet(args.Parse("--json"))),
            ("pci", _) => throw new UsageException($"host pci: unknown subcommand '{sub}' (pci list)"),
            ("sriov", _) => throw new UsageException($"host sriov: unknown subcommand '{sub}' (sriov set PF N)"),
            _ => throw new UsageException($"host: unknown subcommand '{area}'"),
        };
    }

    private int WriteHelp()
    {
        app.Out.Write(Help("host"));
        return ExitCodes.Ok;
    }

    private int PciList(ParsedArgs options)
    {
        options.Positionals("host", "host pci list [--json]", 0, 0);
        var devices = Devices().List();
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                foreach (var d in devices)
                    WriteDevice(w, d);
                w.WriteEndArray();
            }));
            return ExitCodes.Ok;
        }
        CliOutput.Table(app.Out, ["ADDRESS", "ID", "CLASS", "DRIVER", "IOMMU", "SR-IOV"], devices.Select(d => (IReadOnlyList<string>)
        [
            d.Address.ToString(), d.VendorDevice, d.ClassName, d.Driver ?? "-",
            d.IommuGroup?.ToString(CultureInfo.InvariantCulture) ?? "-", SriovText(d),
        ]));
        return ExitCodes.Ok;
    }

    /// <summary>"VF of 03:00.0" for a VF, "2/8 VFs" for a PF, "-" otherwise (the PowerShell table's wording).</summary>
    internal static string SriovText(PciHostDevice d) =>
        d.PhysicalFunction is { } pf ? "VF of " + pf.ToString()[5..]
        : d.SriovTotalVfs is { } total ? string.Create(CultureInfo.InvariantCulture, $"{d.SriovNumVfs ?? 0}/{total} VFs")
        : "-";

    private int SriovSet(ParsedArgs options)
    {
        var p = options.Positionals("host", "host sriov set PF N [--json]", 2, 2);
        PciAddress address;
        try { address = PciAddress.Parse(p[0]); }
        catch (FormatException e) { throw new UsageException($"host sriov set: {e.Message}"); }
        if (!int.TryParse(p[1], NumberStyles.None, CultureInfo.InvariantCulture, out var count))
            throw new UsageException($"host sriov set: the VF count '{p[1]}' is not a whole number of 0 or more");
        var devices = Devices();
        var sriov = new HostSriov(devices, SysfsWriter.Instance);
        var before = sriov.Check(address, count).SriovNumVfs ?? 0;
        var changed = sriov.SetVfCount(address, count);
        var vfs = sriov.VirtualFunctions(address);
        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteString("device", address.ToString());
                w.WriteNumber("previousVfCount", before);
                w.WriteNumber("vfCount", count);
                w.WriteBoolean("changed", changed);
                w.WriteStartArray("virtualFunctions");
                foreach (var vf in vfs)
                    w.WriteStringValue(vf.Address.ToString());
                w.WriteEndArray();
                w.WriteEndObject();
            }));
            return ExitCodes.Ok;
        }
        app.Out.WriteLine(changed
            ? $"{address}: {count} virtual functions (was {before})"
            : $"{address}: already has {count} virtual functions");
        foreach (var vf in vfs)
            app.Out.WriteLine($"  VF {vf.Index}: {vf.Address}");
        return ExitCodes.Ok;
    }

    private static void WriteDevice(System.Text.Json.Utf8JsonWriter w, PciHostDevice d)
    {
        w.WriteStartObject();
        w.WriteString("address", d.Address.ToString());
        w.WriteString("vendorDevice", d.VendorDevice);
        w.WriteString("class", d.ClassName);
        CliOutput.WriteNullable(w, "driver", d.Driver);
        if (d.IommuGroup is { } g) w.WriteNumber("iommuGroup", g); else w.WriteNull("iommuGroup");
        if (d.SriovTotalVfs is { } t) w.WriteNumber("sriovTotalVfs", t); else w.WriteNull("sriovTotalVfs");
        if (d.SriovNumVfs is { } n) w.WriteNumber("sriovNumVfs", n); else w.WriteNull("sriovNumVfs");
        CliOutput.WriteNullable(w, "physicalFunction", d.PhysicalFunction?.ToString());
        w.WriteEndObject();
    }

    public static string? Help(string topic) => topic switch
    {
        "host" or "host pci" or "host sriov" => """
            Usage: kvmps host pci list [--json]
                   kvmps host sriov set PF N [--json]

            pci list     every PCI function of the host: ids, class, driver, IOMMU group, and SR-IOV
                         state ("2/8 VFs" on a physical function, "VF of 03:00.0" on a virtual one)
            sriov set    enable N virtual functions on the SR-IOV physical function PF (sriov_numvfs;
                         0 turns SR-IOV off). A non-zero count changes through 0, which removes the
                         existing VFs. Refused: no such device, not SR-IOV capable, N above
                         sriov_totalvfs, a VF bound to vfio-pci (passed to a VM). Needs root.

            SR-IOV has not run on real hardware in the KvmPS project (docs/passthrough-host.md).
            $KVMPS_SYSFS_ROOT reads another sysfs tree instead of /sys (the tests' fake one).

            """,
        _ => null,
    };
}
