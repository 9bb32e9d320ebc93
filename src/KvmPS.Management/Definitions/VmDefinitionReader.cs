using System.Collections;

namespace KvmPS.Management.Definitions;

/// <summary>
/// Builds a <see cref="VmDefinition"/> from a loosely typed dictionary — a manifest hashtable
/// (<c>PsdHashtable.ToPlainObject()</c>) or a JSON document — so both share one schema, one set of defaults
/// and one set of error messages. Keys are case-insensitive; unknown keys are errors.
/// </summary>
/// <remarks>
/// Schema (sizes accept integers or strings like <c>'512MB'</c>):
/// <code>
/// Name, MemoryStartupBytes, MemoryMinimumBytes (= startup), MemoryMaximumBytes (= startup),
/// VcpuCount (= 1), VcpuMaximum (= count), BalloonEnabled, Autostart, Notes,
/// HugePages (none|thp|hugetlbfs), KsmEnabled, NumaNode,
/// Boot = @{ KernelPath; InitrdPath; Cmdline }  or  @{ FirmwarePath; BootDiskIndex (= 0) }  or  @{ Cmdline } / absent = built-in guest,
/// Disks = @( @{ Path (= disk&lt;i&gt;.&lt;format&gt;); Format (raw|qcow2, from the extension); SizeBytes; ReadOnly; BackingImagePath } ),
///   or a storage pool volume instead of Path: @{ Pool (= 'default'); Volume; ... } (docs/pools.md),
/// NetworkAdapters = @( @{ Tap | Bridge | Network | SriovVf = 'DDDD:BB:DD.F'; MacAddress (= generated 52:54:00:xx:xx:xx); VlanId (SriovVf only) } ),
/// PciPassthrough = @( 'DDDD:BB:DD.F' ), VfioUserDevices = @( '/run/dev.sock' ),
/// DvdDrives = @( @{ Path = 'x.iso' } | @{ Pool; Volume } | @{} (empty drive) ),
/// BootOrder = @( 'Dvd', 'Disk', 'Network' ), BootOnce = 'Dvd',
/// Display = @{ Vnc = 'unix' | 'ADDR:PORT'; PasswordFile }
/// </code>
/// </remarks>
public static class VmDefinitionReader
{
    public static readonly IReadOnlyList<string> TopLevelKeys = new[]
    {
        "Name", "MemoryStartupBytes", "MemoryMinimumBytes", "MemoryMaximumBytes", "VcpuCount", "VcpuMaximum",
        "Boot", "Disks", "NetworkAdapters", "BalloonEnabled", "PciPassthrough", "HugePages", "KsmEnabled",
        "NumaNode", "Autostart", "Notes", "LogMaxBytes", "LogFileCount", "DvdDrives", "BootOrder", "BootOnce", "Display",
        "VfioUserDevices", "CpuRelativeWeight", "CpuMaximumPercent", "VmmOverheadLimitBytes",
    };

    public static readonly IReadOnlyList<string> BootKeys = new[] { "KernelPath", "InitrdPath", "Cmdline", "FirmwarePath", "BootDiskIndex" };
    public static readonly IReadOnlyList<string> DiskKeys = new[] { "Path", "Format", "SizeBytes", "ReadOnly", "BackingImagePath", "Pool", "Volume" };
    public static readonly IReadOnlyList<string> DvdDriveKeys = new[] { "Path", "Pool", "Volume" };
    public static readonly IReadOnlyList<string> DisplayKeys = new[] { "Vnc", "PasswordFile" };
    public static readonly IReadOnlyList<string> NetworkAdapterKeys = new[] { "Tap", "Bridge", "Network", "MacAddress", "SriovVf", "VlanId" };

    public static VmDefinition FromDictionary(IDictionary values)
    {
        ArgumentNullException.ThrowIfNull(values);
        // The name is needed for every error message, so peek at it before strict key checking.
        var peekedName = values.Keys.Cast<object>().OfType<string>()
            .FirstOrDefault(k => k.Equals("Name", StringComparison.OrdinalIgnoreCase)) is { } nameKey ? values[nameKey] as string : null;
        var map = new SchemaMap(values, "", peekedName ?? "", TopLevelKeys);
        var name = VmName.Validate(map.RequiredString("Name"));
        map.VmName = name;

        var startup = map.Size("MemoryStartupBytes") ?? throw map.Fail("MemoryStartupBytes", "is required");
        var memory = new MemorySettings(startup, map.Size("MemoryMinimumBytes") ?? startup, map.Size("MemoryMaximumBytes") ?? startup);
        var vcpuCount = map.Int("VcpuCount") ?? 1;
        var vcpus = new VcpuSettings(vcpuCount, map.Int("VcpuMaximum") ?? vcpuCount);

        return new VmDefinition
        {
            Name = name,
            Memory = memory,
            Vcpus = vcpus,
            Boot = ReadBoot(map, name),
            Disks = new ValueList<DiskDefinition>(ReadList(map, "Disks", (x, i) => ReadDisk(x.Item, x.Prefix, i, name))),
            NetworkAdapters = new ValueList<NetworkAdapterDefinition>(WithMacs(name, ReadList(map, "NetworkAdapters", (x, _) => ReadAdapter(x.Item, x.Prefix, name)))),
            BalloonEnabled = map.Bool("BalloonEnabled") ?? false,
            PciPassthrough = new ValueList<PciAddress>(ReadPciAddresses(map)),
            VfioUserDevices = new ValueList<string>(ReadStrings(map, "VfioUserDevices", "an absolute socket path like '/run/dev.sock'")),
            MemoryBacking = new MemoryBackingSettings(
                map.Enum<HugePagesMode>("HugePages") ?? HugePagesMode.None,
                map.Bool("KsmEnabled") ?? false,
                map.Int("NumaNode")),
            Autostart = map.Bool("Autostart") ?? false,
            Notes = map.String("Notes") ?? "",
            LogMaxBytes = map.Size("LogMaxBytes") ?? VmDefinition.DefaultLogMaxBytes,
            LogFileCount = map.Int("LogFileCount") ?? VmDefinition.DefaultLogFileCount,
            DvdDrives = new ValueList<DvdDriveDefinition>(ReadList(map, "DvdDrives", (x, _) => ReadDvdDrive(x.Item, x.Prefix, name))),
            BootOrder = new ValueList<BootDevice>(ReadBootOrder(map)),
            BootOnce = map.Enum<BootDevice>("BootOnce"),
            Display = ReadDisplay(map, name),
            CpuRelativeWeight = map.Int("CpuRelativeWeight") ?? VmResourceLimits.DefaultCpuRelativeWeight,
            CpuMaximumPercent = map.Int("CpuMaximumPercent") ?? VmResourceLimits.NoCpuCapPercent,
            VmmOverheadLimitBytes = map.Size("VmmOverheadLimitBytes") ?? 0,
        }.Validate();
    }

    private static BootSource ReadBoot(SchemaMap parent, string vmName)
    {
        var source = parent.Map("Boot");
        if (source is null)
            return DefaultGuestBoot.Instance;
        var boot = new SchemaMap(source, "Boot", vmName, BootKeys);
        var kernel = boot.String("KernelPath");
        var firmware = boot.String("FirmwarePath");
        if (kernel is not null && firmware is not null)
            throw parent.Fail("Boot", "use either KernelPath (direct kernel boot) or FirmwarePath (firmware boot), not both");
        if (kernel is not null)
        {
            if (boot.Has("BootDiskIndex"))
                throw boot.Fail("BootDiskIndex", "only applies to firmware boot (FirmwarePath)");
            return new DirectKernelBoot(kernel, boot.String("InitrdPath"), boot.String("Cmdline"));
        }
        if (firmware is not null)
        {
            foreach (var kernelOnly in new[] { "InitrdPath", "Cmdline" })
                if (boot.Has(kernelOnly))
                    throw boot.Fail(kernelOnly, "only applies to direct kernel boot (KernelPath)");
            return new FirmwareBoot(firmware, boot.Int("BootDiskIndex") ?? 0);
        }
        foreach (var key in BootKeys)
            if (key != "Cmdline" && boot.Has(key))
                throw boot.Fail(key, "needs KernelPath (direct kernel boot) or FirmwarePath (firmware boot)");
        // Only a command line: the built-in guest, told what to do (guest/README.md, kvmps.run=...).
        return boot.String("Cmdline") is { } cmdline ? new DefaultGuestBoot(cmdline) : DefaultGuestBoot.Instance;
    }

    private static DiskDefinition ReadDisk(IDictionary source, string prefix, int index, string vmName)
    {
        var disk = new SchemaMap(source, prefix, vmName, DiskKeys);
        var path = disk.String("Path");
        if (disk.Has("Pool") || disk.Has("Volume"))
            path = PoolReference(disk, path);
        var backing = disk.String("BackingImagePath");
        var format = disk.Enum<DiskFormat>("Format") ?? DiskDefinition.DefaultFormat(path, backing);
        path ??= $"disk{index}.{format.ToString().ToLowerInvariant()}";
        return new DiskDefinition(path, format, disk.Size("SizeBytes"), disk.Bool("ReadOnly") ?? false, backing);
    }

    /// <summary><c>Pool = 'p'; Volume = 'v'</c> (Pool defaults to 'default') → "pool://p/v"; not together with Path.</summary>
    private static string PoolReference(SchemaMap disk, string? path)
    {
        if (path is not null)
            throw disk.Fail("Path", "give either Path or Pool and Volume, not both");
        var volume = disk.String("Volume") ?? throw disk.Fail("Volume", "is required with Pool (the volume's file name in the pool)");
        var pool = disk.String("Pool") ?? Pools.StoragePoolNames.DefaultPool;
        if (!Pools.StoragePoolNames.IsValidPool(pool))
            throw disk.Fail("Pool", $"'{pool}' is not a valid pool name (1-63 letters, digits, '.', '_' or '-', starting with a letter or digit)");
        if (Pools.StoragePoolNames.VolumeNameProblem(volume) is { } problem)
            throw disk.Fail("Volume", $"'{VmName.ForDisplay(volume)}' {problem}");
        return Pools.PoolVolumeReference.Format(pool, volume);
    }

    private static DvdDriveDefinition ReadDvdDrive(IDictionary source, string prefix, string vmName)
    {
        var drive = new SchemaMap(source, prefix, vmName, DvdDriveKeys);
        var path = drive.String("Path");
        if (drive.Has("Pool") || drive.Has("Volume"))
            path = PoolReference(drive, path);
        return path is null ? DvdDriveDefinition.Empty : new DvdDriveDefinition(path);
    }

    private static IEnumerable<BootDevice> ReadBootOrder(SchemaMap map)
    {
        var items = map.List("BootOrder") ?? Array.Empty<object?>();
        var order = new List<BootDevice>();
        for (var i = 0; i < items.Count; i++)
        {
            var key = $"BootOrder[{i}]";
            if (items[i] is not string text || !Enum.TryParse<BootDevice>(text, ignoreCase: true, out var device) || !Enum.IsDefined(device) || char.IsDigit(text.TrimStart()[0]))
                throw new VmDefinitionException(map.VmName, key, $"{SchemaMap.Describe(items[i])} is not a boot device (one of: Dvd, Disk, Network)");
            order.Add(device);
        }
        return order;
    }

    private static DisplaySettings? ReadDisplay(SchemaMap parent, string vmName)
    {
        var source = parent.Map("Display");
        if (source is null)
            return null;
        var display = new SchemaMap(source, "Display", vmName, DisplayKeys);
        return new DisplaySettings(display.String("Vnc") ?? DisplaySettings.UnixOnly, display.String("PasswordFile"));
    }

    /// <summary>An adapter as read, its MAC possibly not yet generated.</summary>
    private readonly record struct AdapterEntry(string? Tap, string? Bridge, string? Network, MacAddress? Mac, PciAddress? SriovVf, int? VlanId);

    private static AdapterEntry ReadAdapter(IDictionary source, string prefix, string vmName)
    {
        var adapter = new SchemaMap(source, prefix, vmName, NetworkAdapterKeys);
        var macText = adapter.String("MacAddress");
        MacAddress? mac;
        try
        {
            mac = macText is null ? null : MacAddress.Parse(macText);
        }
        catch (ValueFormatException e)
        {
            throw adapter.Fail("MacAddress", e.Message, e);
        }
        PciAddress? vf;
        try
        {
            vf = adapter.String("SriovVf") is { } text ? PciAddress.Parse(text) : null;
        }
        catch (ValueFormatException e)
        {
            throw adapter.Fail("SriovVf", e.Message, e);
        }
        return new AdapterEntry(adapter.String("Tap"), adapter.String("Bridge"), adapter.String("Network"), mac, vf, adapter.Int("VlanId"));
    }

    /// <summary>Adapters without a MAC get generated ones that avoid every address the manifest gives.</summary>
    private static IEnumerable<NetworkAdapterDefinition> WithMacs(string vmName, List<AdapterEntry> adapters)
    {
        var taken = adapters.Where(a => a.Mac is not null).Select(a => a.Mac!.Value).ToList();
        var result = new List<NetworkAdapterDefinition>(adapters.Count);
        for (var i = 0; i < adapters.Count; i++)
        {
            var a = adapters[i];
            var mac = a.Mac ?? NetworkAdapterDefinition.GenerateMac(vmName, i, taken);
            taken.Add(mac);
            result.Add(new NetworkAdapterDefinition(a.Tap, a.Bridge, mac, a.Network, a.SriovVf, a.VlanId));
        }
        return result;
    }

    private static IEnumerable<PciAddress> ReadPciAddresses(SchemaMap map)
    {
        var items = map.List("PciPassthrough") ?? Array.Empty<object?>();
        var addresses = new List<PciAddress>();
        for (var i = 0; i < items.Count; i++)
        {
            var key = $"PciPassthrough[{i}]";
            if (items[i] is not string text)
                throw new VmDefinitionException(map.VmName, key, $"must be a PCI address string like '0000:01:00.0', not {SchemaMap.Describe(items[i])}");
            try
            {
                addresses.Add(PciAddress.Parse(text));
            }
            catch (ValueFormatException e)
            {
                throw new VmDefinitionException(map.VmName, key, e.Message, e);
            }
        }
        return addresses;
    }

    private static List<string> ReadStrings(SchemaMap map, string key, string expected)
    {
        var items = map.List(key) ?? Array.Empty<object?>();
        var result = new List<string>(items.Count);
        for (var i = 0; i < items.Count; i++)
            result.Add(items[i] as string ?? throw new VmDefinitionException(map.VmName, $"{key}[{i}]", $"must be {expected}, not {SchemaMap.Describe(items[i])}"));
        return result;
    }

    private static List<T> ReadList<T>(SchemaMap map, string key, Func<(IDictionary Item, string Prefix), int, T> read)
    {
        var items = map.List(key) ?? Array.Empty<object?>();
        var result = new List<T>(items.Count);
        for (var i = 0; i < items.Count; i++)
        {
            var prefix = $"{key}[{i}]";
            if (items[i] is not IDictionary item)
                throw new VmDefinitionException(map.VmName, prefix, $"must be a hashtable, not {SchemaMap.Describe(items[i])}");
            result.Add(read((item, prefix), i));
        }
        return result;
    }
}
