using System.Collections;
using System.Text.Json;

namespace KvmPS.Management.Definitions;

/// <summary>
/// vm.json (de)serialization. Reading goes JSON → document → dictionary → <see cref="VmDefinitionReader"/>,
/// so JSON and manifests share one schema, one set of defaults and one validation.
/// </summary>
public static class VmDefinitionJson
{
    public static string Serialize(VmDefinition definition) =>
        JsonSerializer.Serialize(ToDocument(definition.Validate()), VmDefinitionJsonContext.Default.VmDefinitionDocument);

    public static byte[] SerializeToUtf8Bytes(VmDefinition definition) =>
        JsonSerializer.SerializeToUtf8Bytes(ToDocument(definition.Validate()), VmDefinitionJsonContext.Default.VmDefinitionDocument);

    /// <summary>Parses and validates; throws <see cref="VmDefinitionException"/> (JSON errors name the JSON path).</summary>
    public static VmDefinition Deserialize(ReadOnlySpan<byte> utf8Json)
    {
        VmDefinitionDocument? document;
        try
        {
            document = JsonSerializer.Deserialize(utf8Json, VmDefinitionJsonContext.Default.VmDefinitionDocument);
        }
        catch (JsonException e)
        {
            throw new VmDefinitionException("", e.Path ?? "$", e.Message, e);
        }
        if (document is null)
            throw new VmDefinitionException("", "$", "the JSON document is null");
        return VmDefinitionReader.FromDictionary(ToDictionary(document));
    }

    public static VmDefinition Deserialize(string json) => Deserialize(System.Text.Encoding.UTF8.GetBytes(json));

    private static VmDefinitionDocument ToDocument(VmDefinition definition) => new()
    {
        Name = definition.Name,
        MemoryStartupBytes = definition.Memory.StartupBytes,
        MemoryMinimumBytes = definition.Memory.MinimumBytes,
        MemoryMaximumBytes = definition.Memory.MaximumBytes,
        VcpuCount = definition.Vcpus.Count,
        VcpuMaximum = definition.Vcpus.Maximum,
        Boot = definition.Boot switch
        {
            DirectKernelBoot kernel => new BootDocument { KernelPath = kernel.KernelPath, InitrdPath = kernel.InitrdPath, Cmdline = kernel.Cmdline },
            FirmwareBoot firmware => new BootDocument { FirmwarePath = firmware.FirmwarePath, BootDiskIndex = firmware.BootDiskIndex },
            DefaultGuestBoot { Cmdline: { } cmdline } => new BootDocument { Cmdline = cmdline },
            _ => null,
        },
        Disks = definition.Disks.Select(d => new DiskDocument
        {
            Path = d.Pool is null ? d.Path : null,
            Pool = d.Pool,
            Volume = d.Volume,
            Format = d.Format.ToString().ToLowerInvariant(),
            SizeBytes = d.SizeBytes,
            ReadOnly = d.ReadOnly,
            BackingImagePath = d.BackingImagePath,
        }).ToList(),
        NetworkAdapters = definition.NetworkAdapters.Select(n => new NetworkAdapterDocument
        {
            Tap = n.TapName,
            Bridge = n.BridgeName,
            Network = n.NetworkName,
            MacAddress = n.MacAddress.ToString(),
            SriovVf = n.SriovVf?.ToString(),
            VlanId = n.VlanId,
        }).ToList(),
        BalloonEnabled = definition.BalloonEnabled,
        PciPassthrough = definition.PciPassthrough.Select(p => p.ToString()).ToList(),
        // Absent (not empty) when unused, so vm.json of a VM without them reads as before.
        VfioUserDevices = definition.VfioUserDevices.Count == 0 ? null : definition.VfioUserDevices.ToList(),
        HugePages = definition.MemoryBacking.HugePages.ToString().ToLowerInvariant(),
        KsmEnabled = definition.MemoryBacking.KsmEnabled,
        NumaNode = definition.MemoryBacking.NumaNode,
        Autostart = definition.Autostart,
        Notes = definition.Notes,
        LogMaxBytes = definition.LogMaxBytes,
        LogFileCount = definition.LogFileCount,
        // Absent (not empty) when unused, so vm.json of a VM without them reads as before.
        DvdDrives = definition.DvdDrives.Count == 0 ? null : definition.DvdDrives.Select(d => new DvdDriveDocument
        {
            Path = d.Pool is null ? d.Path : null,
            Pool = d.Pool,
            Volume = d.Volume,
        }).ToList(),
        BootOrder = definition.BootOrder.Count == 0 ? null : definition.BootOrder.Select(b => b.ToString()).ToList(),
        BootOnce = definition.BootOnce?.ToString(),
        Display = definition.Display is { } display ? new DisplayDocument { Vnc = display.Vnc, PasswordFile = display.PasswordFile } : null,
        // Absent when the default, so vm.json of a VM without limits reads as before.
        CpuRelativeWeight = definition.CpuRelativeWeight == VmResourceLimits.DefaultCpuRelativeWeight ? null : definition.CpuRelativeWeight,
        CpuMaximumPercent = definition.CpuMaximumPercent == VmResourceLimits.NoCpuCapPercent ? null : definition.CpuMaximumPercent,
        VmmOverheadLimitBytes = definition.VmmOverheadLimitBytes == 0 ? null : definition.VmmOverheadLimitBytes,
    };

    private static IDictionary ToDictionary(VmDefinitionDocument d)
    {
        var map = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);
        void Put(string key, object? value)
        {
            if (value is not null)
                map[key] = value;
        }

        Put("Name", d.Name);
        Put("MemoryStartupBytes", d.MemoryStartupBytes);
        Put("MemoryMinimumBytes", d.MemoryMinimumBytes);
        Put("MemoryMaximumBytes", d.MemoryMaximumBytes);
        Put("VcpuCount", d.VcpuCount);
        Put("VcpuMaximum", d.VcpuMaximum);
        if (d.Boot is { } boot)
        {
            var bootMap = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);
            if (boot.KernelPath is not null) bootMap["KernelPath"] = boot.KernelPath;
            if (boot.InitrdPath is not null) bootMap["InitrdPath"] = boot.InitrdPath;
            if (boot.Cmdline is not null) bootMap["Cmdline"] = boot.Cmdline;
            if (boot.FirmwarePath is not null) bootMap["FirmwarePath"] = boot.FirmwarePath;
            if (boot.BootDiskIndex is not null) bootMap["BootDiskIndex"] = boot.BootDiskIndex;
            map["Boot"] = bootMap;
        }
        Put("Disks", d.Disks?.Select(x => x is null ? null : (object?)Compact(new()
        {
            ["Path"] = x.Path, ["Format"] = x.Format, ["SizeBytes"] = x.SizeBytes, ["ReadOnly"] = x.ReadOnly,
            ["BackingImagePath"] = x.BackingImagePath, ["Pool"] = x.Pool, ["Volume"] = x.Volume,
        })).ToArray());
        Put("NetworkAdapters", d.NetworkAdapters?.Select(x => x is null ? null : (object?)Compact(new()
        {
            ["Tap"] = x.Tap, ["Bridge"] = x.Bridge, ["Network"] = x.Network, ["MacAddress"] = x.MacAddress,
            ["SriovVf"] = x.SriovVf, ["VlanId"] = x.VlanId,
        })).ToArray());
        Put("BalloonEnabled", d.BalloonEnabled);
        Put("PciPassthrough", d.PciPassthrough?.Cast<object?>().ToArray());
        Put("VfioUserDevices", d.VfioUserDevices?.Cast<object?>().ToArray());
        Put("HugePages", d.HugePages);
        Put("KsmEnabled", d.KsmEnabled);
        Put("NumaNode", d.NumaNode);
        Put("Autostart", d.Autostart);
        Put("Notes", d.Notes);
        Put("LogMaxBytes", d.LogMaxBytes);
        Put("LogFileCount", d.LogFileCount);
        Put("DvdDrives", d.DvdDrives?.Select(x => x is null ? null : (object?)Compact(new()
        {
            ["Path"] = x.Path, ["Pool"] = x.Pool, ["Volume"] = x.Volume,
        })).ToArray());
        Put("BootOrder", d.BootOrder?.Cast<object?>().ToArray());
        Put("BootOnce", d.BootOnce);
        Put("CpuRelativeWeight", d.CpuRelativeWeight);
        Put("CpuMaximumPercent", d.CpuMaximumPercent);
        Put("VmmOverheadLimitBytes", d.VmmOverheadLimitBytes);
        if (d.Display is { } display)
            map["Display"] = Compact(new() { ["Vnc"] = display.Vnc, ["PasswordFile"] = display.PasswordFile });
        return map;
    }

    private static Dictionary<string, object?> Compact(Dictionary<string, object?> map)
    {
        foreach (var key in map.Where(p => p.Value is null).Select(p => p.Key).ToList())
            map.Remove(key);
        return map;
    }
}
