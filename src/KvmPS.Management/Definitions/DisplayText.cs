using System.Globalization;

namespace KvmPS.Management.Definitions;

/// <summary>
/// How counts, sizes and VMs read in messages and confirmation prompts, the same in every front end:
/// "1 vCPU", "2 vCPUs", "256 MiB", "web1 (2 vCPUs, 256 MiB)".
/// </summary>
public static class DisplayText
{
    /// <summary>"1 disk", "2 disks"; <paramref name="plural"/> for irregular nouns.</summary>
    public static string Count(long count, string singular, string? plural = null) =>
        count.ToString(CultureInfo.InvariantCulture) + " " + (count == 1 ? singular : plural ?? singular + "s");

    /// <summary>Bytes in the largest binary unit that divides them exactly, else one decimal: "256 MiB", "1.5 GiB", "1000 bytes".</summary>
    public static string Bytes(long bytes)
    {
        string[] units = { "PiB", "TiB", "GiB", "MiB", "KiB" };
        for (var i = 0; i < units.Length; i++)
        {
            var unitBytes = 1L << (10 * (units.Length - i));
            if (bytes != 0 && Math.Abs(bytes) >= unitBytes && bytes % unitBytes == 0)
                return (bytes / unitBytes).ToString(CultureInfo.InvariantCulture) + " " + units[i];
        }
        for (var i = 0; i < units.Length; i++)
        {
            var unitBytes = 1L << (10 * (units.Length - i));
            if (Math.Abs(bytes) >= unitBytes)
                return ((double)bytes / unitBytes).ToString("0.#", CultureInfo.InvariantCulture) + " " + units[i];
        }
        return Count(bytes, "byte");
    }

    /// <summary>
    /// A definition value as the diff and drift records carry it (invariant text), for reading: sizes of
    /// <c>*Bytes</c> properties in binary units, an empty string as <c>''</c>, a missing value as <c>(none)</c>,
    /// anything longer than <paramref name="maximumLength"/> cut short.
    /// </summary>
    public static string Value(string property, string? value, int maximumLength = 40)
    {
        ArgumentNullException.ThrowIfNull(property);
        if (value is null)
            return "(none)";
        if (value.Length == 0)
            return "''";
        if (property.EndsWith("Bytes", StringComparison.Ordinal) && long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var bytes))
            return Bytes(bytes);
        return value.Length <= maximumLength ? value : value[..(maximumLength - 3)] + "...";
    }

    /// <summary>A VM as confirmation prompts name it: "web1 (2 vCPUs, 256 MiB)".</summary>
    public static string Vm(VmDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        return $"{definition.Name} ({Count(definition.Vcpus.Count, "vCPU")}, {Bytes(definition.Memory.StartupBytes)})";
    }
}
