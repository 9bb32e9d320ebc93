using System.Globalization;
using System.Text;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Management.Definitions;

namespace KvmPS.Management.Lifecycle;

/// <summary>
/// Which devices of a running VMM cannot be removed while it runs. <c>describe</c> marks each device
/// <c>"removable"</c>: every hot-plugged one, and configured (cold-plugged) network adapters and disks other than the
/// first (docs/acpi.md "Removing configured devices"); the first disk and the other configured devices stay. A VMM
/// from before that mark removes only hot-plugged devices: then <c>"hotplugged": true|false</c> decides, and without
/// that mark either, the configured device count N of the VMM's command line (<c>--config FILE</c>, or
/// <c>--restore DIR</c>'s config.json, plus <c>--device</c> flags: slots 00:01.0-00:NN.0 are configured); when that
/// cannot be read, every listed device counts as fixed (removals then wait for a restart).
/// </summary>
internal static class ColdPluggedDevices
{
    /// <summary>The definition's disks (by path as in the definition) and adapters (by MAC) the running VMM cannot remove.</summary>
    public static (IReadOnlySet<string> Disks, IReadOnlySet<string> Adapters) Of(VmDefinition definition, DescribeReply description, Func<string, string> resolveDiskPath)
    {
        var configured = description.Devices.Any(d => d.Removable is not null || HotpluggedMark(d) is not null) ? null : ConfiguredDeviceCount(description.Pid);
        var cold = description.Devices.Where(d => d.Removable is { } removable ? !removable
            : HotpluggedMark(d) is { } hot ? !hot : Slot(d.Pci) is not { } slot || configured is not { } n || slot <= n).ToList();
        var coldPaths = cold.Where(d => d.Type == BlockDeviceSpec.TypeName).Select(d => Option(d, "path")).OfType<string>().ToHashSet(StringComparer.Ordinal);
        var coldMacs = cold.Where(d => d.Type == NetDeviceSpec.TypeName).Select(d => Option(d, "mac")).OfType<string>().Select(TryMac).OfType<MacAddress>().ToHashSet();
        var disks = definition.Disks.Where(d => coldPaths.Contains(resolveDiskPath(d.Path))).Select(DeviceChange.DiskKey).ToHashSet(StringComparer.Ordinal);
        var adapters = definition.NetworkAdapters.Where(a => coldMacs.Contains(a.MacAddress)).Select(DeviceChange.AdapterKey).ToHashSet(StringComparer.Ordinal);
        return (disks, adapters);
    }

    private static bool? HotpluggedMark(DeviceDescription device) => device.Hotplugged;

    private static int? Slot(string pci)
    {
        var parts = pci.Split(':', '.');
        return parts.Length == 3 && int.TryParse(parts[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var slot) ? slot : null;
    }

    private static string? Option(DeviceDescription device, string key) =>
        device.Options is { } options && options.TryGetValue(key, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static MacAddress? TryMac(string text)
    {
        try
        {
            return MacAddress.Parse(text);
        }
        catch (ValueFormatException)
        {
            return null;
        }
    }

    /// <summary>The number of devices the VMM process was configured with; null when its command line or configuration cannot be read.</summary>
    internal static int? ConfiguredDeviceCount(int pid)
    {
        if (pid <= 0)
            return null;
        try
        {
            var args = Encoding.UTF8.GetString(File.ReadAllBytes($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/cmdline")).Split('\0');
            string? configPath = null;
            var flags = 0;
            for (var i = 0; i + 1 < args.Length; i++)
            {
                switch (args[i])
                {
                    case "--config":
                        configPath = args[i + 1];
                        break;
                    case "--restore":
                        configPath = Path.Combine(args[i + 1], "config.json");
                        break;
                    case "--device":
                        flags++;
                        break;
                }
            }
            if (configPath is null)
                return null;
            return (ContractJson.ReadConfiguration(File.ReadAllBytes(configPath), configPath).Devices?.Count ?? 0) + flags;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ContractException or JsonException)
        {
            return null;
        }
    }
}
