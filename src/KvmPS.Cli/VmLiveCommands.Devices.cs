using System.Globalization;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Pools;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps vm attach-disk|detach-disk|attach-nic|detach-nic</c>, as virsh's commands of those names: a running VM gets
/// the device hot-plugged (or released by its guest) and the definition follows once the VM has done it; <c>--live</c>
/// and <c>--config</c> as for <c>setvcpus</c>.
/// </summary>
internal sealed partial class VmLiveCommands
{
    public int AttachDisk(ParsedArgs options)
    {
        var p = options.Positionals("vm attach-disk", "vm attach-disk NAME PATH|VOLUME [--pool POOL] [--size SIZE] [--format raw|qcow2] [--backing IMAGE] [--read-only] [--live|--config]", 2, 2);
        var scope = Scope(options, "vm attach-disk");
        var size = options.Value("--size") is { } sizeText ? ParseSize(sizeText) : (long?)null;
        DiskFormat? format = options.Value("--format") switch
        {
            null => null,
            var f when f.Equals("raw", StringComparison.OrdinalIgnoreCase) => DiskFormat.Raw,
            var f when f.Equals("qcow2", StringComparison.OrdinalIgnoreCase) => DiskFormat.Qcow2,
            var f => throw new UsageException($"vm attach-disk: --format must be raw or qcow2 (got '{f}')"),
        };
        var backing = options.Value("--backing");
        if (backing is not null && size is null)
            throw new UsageException("vm attach-disk: --backing needs --size (it creates a new qcow2 overlay)");
        // With --pool, PATH and --backing are volume names in that pool (kept in the definition as pool references).
        var pool = options.Value("--pool");
        string DiskPath(string path) => pool is null ? HostPath(path) : new StoragePoolManager(app.Manager.Store).VolumeReference(pool, path);
        var request = new DiskAttachRequest(DiskPath(p[1]), format, size, backing is null ? null : DiskPath(backing), options.Has("--read-only"));
        var result = app.Manager.AttachDisk(p[0], request, scope);
        return Report(options, p[0], result);
    }

    public int DetachDisk(ParsedArgs options)
    {
        var p = options.Positionals("vm detach-disk", "vm detach-disk NAME PATH [--timeout SECONDS] [--live|--config]", 2, 2);
        var (scope, timeout) = (Scope(options, "vm detach-disk"), Timeout(options, "vm detach-disk"));
        var result = app.Manager.DetachDisk(p[0], HostPath(p[1]), scope, timeout);
        return Report(options, p[0], result);
    }

    public int AttachNic(ParsedArgs options)
    {
        if (options.Help)
            throw new CliApp.HelpRequested("vm attach-nic");
        if (options.Positional.Count != 1)
            throw new UsageException("vm attach-nic: usage: kvmps vm attach-nic NAME --tap TAP|--bridge BRIDGE|--network NETWORK|--sriov-vf DDDD:BB:DD.F [--vlan ID] [--mac MAC] [--live|--config]");
        var name = options.Positional[0];
        var scope = Scope(options, "vm attach-nic");
        var (tap, bridge, network, vfText) = (options.Value("--tap"), options.Value("--bridge"), options.Value("--network"), options.Value("--sriov-vf"));
        if ((tap is null ? 0 : 1) + (bridge is null ? 0 : 1) + (network is null ? 0 : 1) + (vfText is null ? 0 : 1) != 1)
            throw new UsageException("vm attach-nic: give exactly one of --tap, --bridge, --network and --sriov-vf");
        var (vf, vlan) = VirtualFunctionOptions(options, vfText);
        MacAddress? mac = null;
        if (options.Value("--mac") is { } macText)
        {
            try
            {
                mac = MacAddress.Parse(macText);
            }
            catch (ValueFormatException e)
            {
                throw new UsageException($"vm attach-nic: --mac: {e.Message}");
            }
        }
        if (vf is { } function)
        {
            // The same check as Add-KvmNetworkAdapter -SriovVf: a VF whose IOMMU group can be given away.
            foreach (var warning in Management.HostDevices.PciPassthroughCheck.CheckVirtualFunction(app.PciDevices(), function).Warnings)
                app.Err.WriteLine("kvmps: warning: " + warning);
        }
        var result = app.Manager.AddNetworkAdapter(name, tap, bridge, mac, scope, network, vf, vlan);
        return Report(options, name, result);
    }

    /// <summary>--sriov-vf and --vlan (the VLAN only with a VF: the NIC tags the VF's traffic).</summary>
    private static (PciAddress? Vf, int? Vlan) VirtualFunctionOptions(ParsedArgs options, string? vfText)
    {
        int? vlan = null;
        if (options.Value("--vlan") is { } vlanText)
        {
            if (vfText is null)
                throw new UsageException("vm attach-nic: --vlan applies to an SR-IOV adapter (--sriov-vf) only");
            if (!int.TryParse(vlanText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id)
                || id is < NetworkAdapterDefinition.MinimumVlanId or > NetworkAdapterDefinition.MaximumVlanId)
                throw new UsageException($"vm attach-nic: --vlan: '{vlanText}' is not a VLAN id ({NetworkAdapterDefinition.MinimumVlanId}-{NetworkAdapterDefinition.MaximumVlanId})");
            vlan = id;
        }
        if (vfText is null)
            return (null, vlan);
        try { return (PciAddress.Parse(vfText), vlan); }
        catch (ValueFormatException e) { throw new UsageException($"vm attach-nic: --sriov-vf: {e.Message}"); }
    }

    public int DetachNic(ParsedArgs options)
    {
        var p = options.Positionals("vm detach-nic", "vm detach-nic NAME MAC|TAP [--timeout SECONDS] [--live|--config]", 2, 2);
        var (scope, timeout) = (Scope(options, "vm detach-nic"), Timeout(options, "vm detach-nic"));
        var adapter = app.Manager.FindNetworkAdapter(p[0], p[1]);
        var result = app.Manager.RemoveNetworkAdapters(p[0], [adapter.MacAddress], scope, timeout);
        return Report(options, p[0], result);
    }

    /// <summary>An absolute path or one relative to the working directory, as shells mean it; a bare file name stays a name in the VM's disk folder.</summary>
    private static string HostPath(string path) =>
        Path.IsPathRooted(path) || path.StartsWith("./", StringComparison.Ordinal) || path.StartsWith("../", StringComparison.Ordinal) ? Path.GetFullPath(path) : path;

    private static TimeSpan? Timeout(ParsedArgs options, string topic)
    {
        if (options.Value("--timeout") is not { } text)
            return null;
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) || seconds > 600)
            throw new UsageException($"{topic}: --timeout must be a whole number of seconds from 0 to 600 (got '{text}')");
        return TimeSpan.FromSeconds(seconds);
    }
}
