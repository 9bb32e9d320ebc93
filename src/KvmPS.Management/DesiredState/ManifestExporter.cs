using System.Text;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Manifests;
using KvmPS.Management.Selection;

namespace KvmPS.Management.DesiredState;

/// <summary>The result of an export: the manifest text, the VMs it describes, and what could not be described.</summary>
/// <param name="Text">The <c>.psd1</c> manifest (docs/en-US/about_KvmPS_Manifests.md).</param>
/// <param name="VmNames">The VMs in the manifest, in store order.</param>
/// <param name="NotFound">Requested names (not wildcards) that match no VM.</param>
/// <param name="Warnings">What the manifest cannot state (a VM in a transient or failed state: its State is left out).</param>
public sealed record ManifestExport(string Text, IReadOnlyList<string> VmNames, IReadOnlyList<string> NotFound, IReadOnlyList<string> Warnings);

/// <summary>
/// Describes the VMs that exist now as a desired-state manifest (<c>virsh dumpxml</c> for manifests): every
/// definition property that <see cref="ReconcilePlanner"/> compares, and the power state, so that testing the
/// manifest against the same host reports no drift and applying it to an empty store re-creates the VMs.
/// Shared by <c>Export-KvmDesiredState</c> and <c>kvmps export</c>.
/// </summary>
public static class ManifestExporter
{
    /// <summary>
    /// Exports the VMs whose names match <paramref name="patterns"/> (wildcards allowed): all VMs when it is null,
    /// none when it is empty (a pipeline that selected nothing).
    /// </summary>
    /// <param name="networks">Where the networks the VMs' adapters name are looked up; by default the store's network manager.</param>
    /// <param name="pci">Where the SR-IOV physical functions of the VFs the VMs use are read; by default the host's sysfs.</param>
    public static ManifestExport Export(VmManager manager, IEnumerable<string>? patterns = null, INetworkOperations? networks = null, HostDevices.PciHostDevices? pci = null)
    {
        ArgumentNullException.ThrowIfNull(manager);
        var list = patterns?.ToList();
        var selection = list is { Count: 0 }
            ? new VmSelection(Array.Empty<string>(), Array.Empty<string>())
            : VmSelector.Select(manager.Store.ListNames(), list);
        var vms = new List<VmInfo>();
        var notFound = new List<string>(selection.NotFound);
        foreach (var name in selection.Names)
        {
            // Removed between listing and reading: report it like a name that never matched.
            if (manager.TryGet(name) is { } info)
                vms.Add(info);
            else
                notFound.Add(name);
        }
        var warnings = new List<string>();
        // The pools (other than the built-in default) the exported VMs' disks name come along (docs/pools.md).
        var pools = vms.SelectMany(v => v.Definition.Disks).Select(d => d.Pool).OfType<string>()
            .Where(p => p != Pools.StoragePoolNames.DefaultPool).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)
            .Select(p => Pools.StoragePoolRegistry.TryGet(manager.Store.Root, p)).OfType<Pools.StoragePoolDefinition>().ToList();
        // Likewise the networks their adapters are on (docs/networks.md): a manifest that re-creates the VMs needs them.
        var networkNames = vms.SelectMany(v => v.Definition.NetworkAdapters).Select(a => a.NetworkName).OfType<string>()
            .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var networkDefinitions = new List<Networks.NetworkDefinition>();
        if (networkNames.Count > 0)
        {
            networks ??= new NetworkManagerOperations(manager.Store);
            foreach (var name in networkNames)
                if (networks.TryGet(name) is { } network)
                    networkDefinitions.Add(network.Definition);
                else
                    warnings.Add($"Network '{name}' (named by a VM's adapter) does not exist: the manifest does not declare it");
        }
        var sriov = SriovCounts(vms.Select(v => v.Definition), pci);
        var text = Write(vms.Select(v => (v.Definition, v.State)), warnings, pools, networkDefinitions, sriov);
        return new ManifestExport(text, vms.Select(v => v.Name).ToList(), notFound, warnings);
    }

    /// <summary>
    /// The VF counts of the SR-IOV physical functions whose VFs the definitions use (passed through, or as network
    /// adapters): a manifest that re-creates the VMs on a freshly booted host needs those VFs to exist.
    /// </summary>
    private static List<DesiredSriovVfCount> SriovCounts(IEnumerable<VmDefinition> definitions, HostDevices.PciHostDevices? pci)
    {
        var functions = definitions.SelectMany(HostDevices.PciPassthroughHost.HostFunctions).ToList();
        var result = new List<DesiredSriovVfCount>();
        if (functions.Count == 0)
            return result;
        pci ??= new HostDevices.PciHostDevices();
        foreach (var function in functions.Distinct())
            if (pci.TryRead(function)?.PhysicalFunction is { } pf && result.All(r => r.PhysicalFunction != pf) && pci.TryRead(pf)?.SriovNumVfs is { } count)
                result.Add(new DesiredSriovVfCount(pf, count));
        result.Sort((a, b) => string.CompareOrdinal(a.PhysicalFunction.ToString(), b.PhysicalFunction.ToString()));
        return result;
    }

    /// <summary>
    /// Writes manifest text to <paramref name="path"/> (UTF-8, no BOM) through a temporary file in the same folder,
    /// so a reader never sees half a manifest and a failed write leaves an existing file as it was.
    /// </summary>
    public static void WriteFile(string path, string text, bool overwrite)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(text);
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full))
            throw new IOException($"'{full}' is a directory; give a file name for the manifest.");
        if (!overwrite && File.Exists(full))
            throw new ManifestFileExistsException(full);
        var temporary = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            File.WriteAllText(temporary, text, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
            File.Move(temporary, full, overwrite);
        }
        catch (IOException) when (!overwrite && File.Exists(full))
        {
            // Created by someone else between the check and the move.
            throw new ManifestFileExistsException(full);
        }
        finally
        {
            if (File.Exists(temporary))
                File.Delete(temporary);
        }
    }

    /// <summary>The manifest text for definitions and their current states. Pure (tests, other front ends).</summary>
    /// <param name="pools">Storage pools to state before the VMs (a <c>StoragePools</c> section); none when null or empty.</param>
    /// <param name="networks">Networks to state before the VMs (a <c>Networks</c> section); none when null or empty.</param>
    /// <param name="sriov">VF counts of SR-IOV physical functions to state (a <c>HostSriov</c> section); none when null or empty.</param>
    public static string Write(IEnumerable<(VmDefinition Definition, VmState State)> vms, IList<string>? warnings = null, IReadOnlyList<Pools.StoragePoolDefinition>? pools = null,
        IReadOnlyList<Networks.NetworkDefinition>? networks = null, IReadOnlyList<DesiredSriovVfCount>? sriov = null)
    {
        ArgumentNullException.ThrowIfNull(vms);
        var list = vms.ToList();
        var text = new StringBuilder();
        text.Append("# KvmPS desired-state manifest, exported from the VMs on this host (").Append(list.Count)
            .Append(list.Count == 1 ? " VM" : " VMs").Append("). Schema: about_KvmPS_Manifests.\n");
        text.Append("#   Test-KvmDesiredState <file>    (or: kvmps test <file>)   reports drift from this description\n");
        text.Append("#   Invoke-KvmDesiredState <file>  (or: kvmps apply <file>)  makes the host match it again\n");
        text.Append("@{\n");
        if (pools is { Count: > 0 })
        {
            text.Append("    StoragePools = @(\n");
            foreach (var pool in pools)
                text.Append("        ").Append(Inline(("Name", PsdLiteral.String(pool.Name)), ("Path", PsdLiteral.String(pool.Path)),
                    ("Autostart", PsdLiteral.Boolean(pool.Autostart)))).Append('\n');
            text.Append("    )\n");
        }
        if (networks is { Count: > 0 })
        {
            text.Append("    Networks = @(\n");
            foreach (var network in networks)
                text.Append("        ").Append(NetworkLiteral(network)).Append('\n');
            text.Append("    )\n");
        }
        if (sriov is { Count: > 0 })
        {
            text.Append("    HostSriov = @{\n");
            foreach (var entry in sriov)
                text.Append("        ").Append(PsdLiteral.String(entry.PhysicalFunction.ToString())).Append(" = ").Append(PsdLiteral.Integer(entry.VfCount)).Append('\n');
            text.Append("    }\n");
        }
        if (list.Count == 0)
        {
            text.Append("    VirtualMachines = @()\n}\n");
            return text.ToString();
        }
        text.Append("    VirtualMachines = @(\n");
        for (var i = 0; i < list.Count; i++)
        {
            if (i > 0)
                text.Append('\n');
            WriteVm(text, list[i].Definition, list[i].State, warnings);
        }
        text.Append("    )\n}\n");
        return text.ToString();
    }

    /// <summary>
    /// A manifest exported on another host (Export-KvmDesiredState -HostName) with a top-level <c>HostName</c> naming
    /// that host first, so applying the file here runs it there again (docs/remote.md) instead of on this host.
    /// </summary>
    public static string WithHostName(string text, string hostName)
    {
        ArgumentNullException.ThrowIfNull(text);
        var start = text.IndexOf("@{\n", StringComparison.Ordinal);
        if (start < 0)
            throw new FormatException("the exported manifest has no top-level '@{' to put HostName into");
        var line = $"    {DesiredStateReader.HostNameKey} = {Manifests.PsdLiteral.String(hostName)}\n";
        return text.Insert(start + 3, line);
    }

    private static void WriteVm(StringBuilder text, VmDefinition d, VmState state, IList<string>? warnings)
    {
        ArgumentNullException.ThrowIfNull(d);
        var entries = new List<(string Key, string Value)> { ("Name", PsdLiteral.String(d.Name)) };
        if (ToDesired(state) is { } desired)
        {
            entries.Add(("State", PsdLiteral.String(desired.ToString())));
        }
        else
        {
            // A manifest can only ask for Running, Off or Paused; leaving State out keeps the test clean and says so.
            text.Append("        # '").Append(d.Name).Append("' was ").Append(state).Append(" when exported: State is not stated.\n");
            warnings?.Add($"VM '{d.Name}' is {state}: the manifest does not state its power state (only Running, Off and Paused can be stated)");
        }
        entries.Add(("MemoryStartupBytes", PsdLiteral.Size(d.Memory.StartupBytes)));
        entries.Add(("MemoryMinimumBytes", PsdLiteral.Size(d.Memory.MinimumBytes)));
        entries.Add(("MemoryMaximumBytes", PsdLiteral.Size(d.Memory.MaximumBytes)));
        entries.Add(("VcpuCount", PsdLiteral.Integer(d.Vcpus.Count)));
        entries.Add(("VcpuMaximum", PsdLiteral.Integer(d.Vcpus.Maximum)));
        if (BootLiteral(d.Boot) is { } boot)
            entries.Add(("Boot", boot));
        // The reader resolves relative boot paths against the manifest's folder, which may not be what the VM used.
        if (BootPaths(d.Boot).FirstOrDefault(p => !Path.IsPathRooted(p)) is { } relative)
            warnings?.Add($"VM '{d.Name}': the boot path '{relative}' is relative; a manifest resolves it against its own folder");
        entries.Add(("BalloonEnabled", PsdLiteral.Boolean(d.BalloonEnabled)));
        // Memory backing only when it is not the default: these keys need host set-up to mean anything.
        if (d.MemoryBacking.HugePages != HugePagesMode.None)
            entries.Add(("HugePages", PsdLiteral.String(d.MemoryBacking.HugePages.ToString().ToLowerInvariant())));
        if (d.MemoryBacking.KsmEnabled)
            entries.Add(("KsmEnabled", PsdLiteral.Boolean(true)));
        if (d.MemoryBacking.NumaNode is { } node)
            entries.Add(("NumaNode", PsdLiteral.Integer(node)));
        entries.Add(("Autostart", PsdLiteral.Boolean(d.Autostart)));
        entries.Add(("Notes", PsdLiteral.String(d.Notes)));
        // Log limits only when not the default, like memory backing.
        if (d.LogMaxBytes != VmDefinition.DefaultLogMaxBytes)
            entries.Add(("LogMaxBytes", d.LogMaxBytes == 0 ? PsdLiteral.Integer(0) : PsdLiteral.Size(d.LogMaxBytes)));
        if (d.LogFileCount != VmDefinition.DefaultLogFileCount)
            entries.Add(("LogFileCount", PsdLiteral.Integer(d.LogFileCount)));
        // CPU and memory limits only when set, like the log limits.
        if (d.CpuRelativeWeight != VmResourceLimits.DefaultCpuRelativeWeight)
            entries.Add(("CpuRelativeWeight", PsdLiteral.Integer(d.CpuRelativeWeight)));
        if (d.CpuMaximumPercent != VmResourceLimits.NoCpuCapPercent)
            entries.Add(("CpuMaximumPercent", PsdLiteral.Integer(d.CpuMaximumPercent)));
        if (d.VmmOverheadLimitBytes != 0)
            entries.Add(("VmmOverheadLimitBytes", PsdLiteral.Size(d.VmmOverheadLimitBytes)));
        // The one-time boot device and the display only when set (a manifest cannot state "none" for them otherwise).
        if (d.BootOnce is { } once)
            entries.Add(("BootOnce", PsdLiteral.String(once.ToString())));
        if (d.Display is { } display)
            entries.Add(("Display", Inline(("Vnc", PsdLiteral.String(display.Vnc)),
                ("PasswordFile", display.PasswordFile is null ? null : PsdLiteral.String(display.PasswordFile)))));

        // Lists are written even when empty, so the manifest manages them (a disk added later shows as drift).
        var lists = new List<(string Key, IReadOnlyList<string> Items)>
        {
            ("Disks", d.Disks.Select(DiskLiteral).ToList()),
            ("NetworkAdapters", d.NetworkAdapters.Select(AdapterLiteral).ToList()),
            ("PciPassthrough", d.PciPassthrough.Select(a => PsdLiteral.String(a.ToString())).ToList()),
            ("VfioUserDevices", d.VfioUserDevices.Select(PsdLiteral.String).ToList()),
            ("DvdDrives", d.DvdDrives.Select(DvdLiteral).ToList()),
            ("BootOrder", d.BootOrder.Select(b => PsdLiteral.String(b.ToString())).ToList()),
        };

        var width = entries.Select(e => e.Key.Length).Concat(lists.Select(l => l.Key.Length)).Max();
        text.Append("        @{\n");
        foreach (var (key, value) in entries)
            text.Append("            ").Append(key.PadRight(width)).Append(" = ").Append(value).Append('\n');
        foreach (var (key, items) in lists)
        {
            text.Append("            ").Append(key.PadRight(width)).Append(" = @(");
            if (items.Count == 0)
            {
                text.Append(")\n");
                continue;
            }
            text.Append('\n');
            foreach (var item in items)
                text.Append("                ").Append(item).Append('\n');
            text.Append("            )\n");
        }
        text.Append("        }\n");
    }

    private static DesiredPowerState? ToDesired(VmState state) => state switch
    {
        VmState.Running => DesiredPowerState.Running,
        VmState.Paused => DesiredPowerState.Paused,
        VmState.Off => DesiredPowerState.Off,
        _ => null,
    };

    /// <summary>Null for the plain built-in guest (the reader's default when Boot is left out).</summary>
    private static string? BootLiteral(BootSource boot) => boot switch
    {
        DefaultGuestBoot { Cmdline: null } => null,
        DefaultGuestBoot builtIn => Inline(("Cmdline", PsdLiteral.String(builtIn.Cmdline!))),
        DirectKernelBoot kernel => Inline(
            ("KernelPath", PsdLiteral.String(kernel.KernelPath)),
            ("InitrdPath", kernel.InitrdPath is null ? null : PsdLiteral.String(kernel.InitrdPath)),
            ("Cmdline", kernel.Cmdline is null ? null : PsdLiteral.String(kernel.Cmdline))),
        FirmwareBoot firmware => Inline(
            ("FirmwarePath", PsdLiteral.String(firmware.FirmwarePath)),
            ("BootDiskIndex", PsdLiteral.Integer(firmware.BootDiskIndex))),
        _ => throw new ArgumentException($"Unknown boot source {boot.GetType().Name}.", nameof(boot)),
    };

    private static IEnumerable<string> BootPaths(BootSource boot) => boot switch
    {
        DirectKernelBoot kernel => new[] { kernel.KernelPath, kernel.InitrdPath }.OfType<string>(),
        FirmwareBoot firmware => new[] { firmware.FirmwarePath },
        _ => Array.Empty<string>(),
    };

    private static string DiskLiteral(DiskDefinition disk) => Inline(
        // A disk by pool and volume is exported as such (docs/pools.md), not as its internal pool:// reference.
        ("Path", disk.Pool is null ? PsdLiteral.String(disk.Path) : null),
        ("Pool", disk.Pool is null ? null : PsdLiteral.String(disk.Pool)),
        ("Volume", disk.Volume is null ? null : PsdLiteral.String(disk.Volume)),
        ("Format", PsdLiteral.String(disk.Format.ToString().ToLowerInvariant())),
        ("SizeBytes", disk.SizeBytes is { } size ? PsdLiteral.Size(size) : null),
        ("ReadOnly", disk.ReadOnly ? PsdLiteral.Boolean(true) : null),
        ("BackingImagePath", disk.BackingImagePath is null ? null : PsdLiteral.String(disk.BackingImagePath)));

    private static string DvdLiteral(DvdDriveDefinition drive) => Inline(
        ("Path", drive.Pool is null && drive.Path is not null ? PsdLiteral.String(drive.Path) : null),
        ("Pool", drive.Pool is null ? null : PsdLiteral.String(drive.Pool)),
        ("Volume", drive.Volume is null ? null : PsdLiteral.String(drive.Volume)));

    private static string AdapterLiteral(NetworkAdapterDefinition adapter) => Inline(
        ("Network", adapter.NetworkName is null ? null : PsdLiteral.String(adapter.NetworkName)),
        ("Tap", adapter.TapName is null ? null : PsdLiteral.String(adapter.TapName)),
        ("Bridge", adapter.BridgeName is null ? null : PsdLiteral.String(adapter.BridgeName)),
        ("SriovVf", adapter.SriovVf is { } vf ? PsdLiteral.String(vf.ToString()) : null),
        ("MacAddress", PsdLiteral.String(adapter.MacAddress.ToString())),
        ("VlanId", adapter.VlanId is { } vlan ? PsdLiteral.Integer(vlan) : null));

    /// <summary>A network entry with the keys the manifest reader takes (DesiredNetworkReader); unset settings are left out.</summary>
    private static string NetworkLiteral(Networks.NetworkDefinition n)
    {
        string? Address(System.Net.IPAddress? a) => a is null ? null : PsdLiteral.String(a.ToString());
        var leases = n.StaticLeases is { Count: > 0 } list
            ? "@(" + string.Join(", ", list.Select(l => Inline(("Mac", PsdLiteral.String(l.MacAddress.ToString())), ("Address", PsdLiteral.String(l.Address.ToString())),
                ("HostName", l.HostName is null ? null : PsdLiteral.String(l.HostName))))) + ")"
            : null;
        return Inline(
            ("Name", PsdLiteral.String(n.Name)),
            ("Mode", PsdLiteral.String(n.Mode.ToString())),
            ("Bridge", PsdLiteral.String(n.BridgeName)),
            ("Subnet", n.Subnet is null ? null : PsdLiteral.String(n.Subnet)),
            ("Gateway", Address(n.Gateway)),
            // The manifest states a range as both ends; a half-set one is the manager's default and is left out.
            ("DhcpRange", n.DhcpRangeStart is null || n.DhcpRangeEnd is null ? null : $"@({Address(n.DhcpRangeStart)}, {Address(n.DhcpRangeEnd)})"),
            ("StaticLeases", leases),
            ("DnsDomain", n.DnsDomain is null ? null : PsdLiteral.String(n.DnsDomain)),
            ("Mtu", n.MtuBytes is { } mtu ? PsdLiteral.Integer(mtu) : null),
            ("Autostart", PsdLiteral.Boolean(n.Autostart)));
    }

    private static string Inline(params (string Key, string? Value)[] entries) =>
        "@{ " + string.Join("; ", entries.Where(e => e.Value is not null).Select(e => $"{e.Key} = {e.Value}")) + " }";
}

/// <summary>An export would overwrite a file that exists (and overwriting was not asked for).</summary>
public sealed class ManifestFileExistsException(string path)
    : IOException($"The file '{path}' already exists; use -Force (kvmps export: --force) to overwrite it.")
{
    public string Path { get; } = path;
}
