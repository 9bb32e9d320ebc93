using System.Globalization;
using System.Text.RegularExpressions;

namespace KvmPS.Management.Definitions;

/// <summary>A host PCI function in sysfs form <c>DDDD:BB:DD.F</c> (domain:bus:device.function), printed lowercase.</summary>
public readonly partial record struct PciAddress(ushort Domain, byte Bus, byte Device, byte Function)
{
    [GeneratedRegex(@"^(?<domain>[0-9A-Fa-f]{4}):(?<bus>[0-9A-Fa-f]{2}):(?<device>[0-9A-Fa-f]{2})\.(?<function>[0-7])\z")]
    private static partial Regex Pattern();

    public static PciAddress Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var match = Pattern().Match(text);
        if (!match.Success)
            throw new ValueFormatException("PCI address", text, "expected DDDD:BB:DD.F with hex domain, bus and device and a function 0-7 (e.g. 0000:01:00.0)");
        var device = byte.Parse(match.Groups["device"].Value, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        if (device > 0x1F)
            throw new ValueFormatException("PCI address", text, "the device number must be 00-1f");
        return new PciAddress(
            ushort.Parse(match.Groups["domain"].Value, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture),
            byte.Parse(match.Groups["bus"].Value, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture),
            device,
            byte.Parse(match.Groups["function"].Value, CultureInfo.InvariantCulture));
    }

    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Domain:x4}:{Bus:x2}:{Device:x2}.{Function}");
}
