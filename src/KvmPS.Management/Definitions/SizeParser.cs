using System.Globalization;
using System.Numerics;
using System.Text.RegularExpressions;

namespace KvmPS.Management.Definitions;

/// <summary>
/// Byte sizes written as integers or as PowerShell-style size strings (<c>512MB</c>, <c>1.5GB</c>, <c>2 GiB</c>).
/// Units are 1024-based like PowerShell's <c>kb/mb/gb/tb/pb</c>; the result must be a whole number of bytes.
/// Shared by the manifest schema and any other text input so sizes mean the same everywhere.
/// </summary>
public static partial class SizeParser
{
    [GeneratedRegex(@"^(?<number>[0-9]+(\.[0-9]+)?|\.[0-9]+)\s*(?<unit>[KMGTP]i?B|B)?\z", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex SizePattern();

    /// <summary>Parses a size string; throws <see cref="ValueFormatException"/> naming the input.</summary>
    public static long ParseBytes(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var match = SizePattern().Match(text.Trim());
        if (!match.Success)
            throw new ValueFormatException("size", text, "expected a number of bytes, optionally followed by KB, MB, GB, TB or PB (e.g. 512MB)");
        var unit = match.Groups["unit"].Success ? match.Groups["unit"].Value.ToUpperInvariant().Replace("I", "") : "B";
        var shift = unit switch { "B" => 0, "KB" => 10, "MB" => 20, "GB" => 30, "TB" => 40, "PB" => 50, _ => -1 };
        var number = decimal.Parse(match.Groups["number"].Value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture);
        var bytes = number * (decimal)(1L << shift);
        if (bytes != decimal.Truncate(bytes))
            throw new ValueFormatException("size", text, "the size is not a whole number of bytes");
        if (bytes > long.MaxValue)
            throw new ValueFormatException("size", text, "the size is too large");
        return (long)bytes;
    }

    /// <summary>Size from a loosely typed value: an integer, a whole-number real, or a size string.</summary>
    public static long FromValue(object? value) => value switch
    {
        null => throw new ValueFormatException("size", "$null", "a size is required"),
        string text => ParseBytes(text),
        int or long or short or byte or sbyte or ushort or uint => CheckNonNegative(Convert.ToInt64(value, CultureInfo.InvariantCulture), value),
        ulong u => u <= long.MaxValue ? (long)u : throw new ValueFormatException("size", u.ToString(CultureInfo.InvariantCulture), "the size is too large"),
        double d => FromReal((decimal?)(double.IsFinite(d) && Math.Abs(d) < 9.2e18 ? (decimal)d : null), d.ToString(CultureInfo.InvariantCulture)),
        decimal m => FromReal(m, m.ToString(CultureInfo.InvariantCulture)),
        BigInteger b => b >= 0 && b <= long.MaxValue ? (long)b : throw new ValueFormatException("size", b.ToString(CultureInfo.InvariantCulture), "out of range"),
        _ => throw new ValueFormatException("size", Convert.ToString(value, CultureInfo.InvariantCulture) ?? "", $"expected a number or a size string, not a {value.GetType().Name}"),
    };

    /// <summary>Shortest exact rendering, e.g. 536870912 → "512MB", 1000 → "1000B".</summary>
    public static string Format(long bytes)
    {
        string[] units = { "PB", "TB", "GB", "MB", "KB" };
        for (var i = 0; i < units.Length; i++)
        {
            var unitBytes = 1L << (10 * (units.Length - i));
            if (bytes != 0 && bytes % unitBytes == 0)
                return (bytes / unitBytes).ToString(CultureInfo.InvariantCulture) + units[i];
        }
        return bytes.ToString(CultureInfo.InvariantCulture) + "B";
    }

    private static long CheckNonNegative(long value, object original) =>
        value >= 0 ? value : throw new ValueFormatException("size", Convert.ToString(original, CultureInfo.InvariantCulture)!, "a size cannot be negative");

    private static long FromReal(decimal? value, string shown)
    {
        if (value is not { } m || m > long.MaxValue)
            throw new ValueFormatException("size", shown, "the size is too large");
        if (m < 0)
            throw new ValueFormatException("size", shown, "a size cannot be negative");
        if (m != decimal.Truncate(m))
            throw new ValueFormatException("size", shown, "the size is not a whole number of bytes");
        return (long)m;
    }
}
