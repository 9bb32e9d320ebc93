using System.Globalization;

namespace KvmPS.Management.Manifests;

/// <summary>
/// Conversions for the primitive casts a data file may use (<c>[int]</c>, <c>[string]</c>, ...), following
/// PowerShell's rules: numbers round half-to-even, strings parse as PowerShell numbers (hex and kb/mb/...
/// included), any non-empty string is <c>$true</c>, <c>$null</c> becomes 0/""/<c>$false</c>.
/// </summary>
internal static class PsdCast
{
    private enum Target { Int32, Int64, UInt32, UInt64, Byte, Double, Decimal, Boolean, String }

    public const string AllowedTypeList = "int, long, uint32, uint64, byte, double, decimal, bool, string";

    private static readonly Dictionary<string, Target> TargetsByName = new(StringComparer.OrdinalIgnoreCase)
    {
        ["int"] = Target.Int32, ["int32"] = Target.Int32,
        ["long"] = Target.Int64, ["int64"] = Target.Int64,
        ["uint32"] = Target.UInt32, ["uint"] = Target.UInt32,
        ["uint64"] = Target.UInt64, ["ulong"] = Target.UInt64,
        ["byte"] = Target.Byte,
        ["double"] = Target.Double,
        ["decimal"] = Target.Decimal,
        ["bool"] = Target.Boolean, ["boolean"] = Target.Boolean,
        ["string"] = Target.String,
    };

    public static bool IsAllowedType(string typeName) => TargetsByName.ContainsKey(StripSystemPrefix(typeName));

    /// <summary>Applies <c>[typeName]</c> to <paramref name="operand"/>; throws a parse error at <paramref name="castPosition"/>.</summary>
    public static PsdValue Apply(string typeName, PsdValue operand, SourcePosition castPosition)
    {
        var target = TargetsByName[StripSystemPrefix(typeName)];
        if (target == Target.String)
            return new PsdString(ToText(operand, castPosition, typeName), castPosition);
        if (target == Target.Boolean)
            return new PsdBoolean(ToBoolean(operand, castPosition, typeName), castPosition);

        object? source = operand switch
        {
            PsdNull => 0,
            PsdBoolean b => b.Value ? 1 : 0,
            PsdNumber n => n.Value,
            PsdString s => s.Value.Trim().Length == 0 ? 0 : PsdNumberScanner.TryParseWhole(s.Value, out var parsed) ? parsed : null,
            _ => null,
        };
        if (source is null)
            throw CannotConvert(operand, typeName, castPosition);
        try
        {
            object converted = target switch
            {
                Target.Int32 => checked((int)ToIntegral(source)),
                Target.Int64 => checked((long)ToIntegral(source)),
                Target.UInt32 => checked((uint)ToIntegral(source)),
                Target.UInt64 => checked((ulong)ToIntegral(source)),
                Target.Byte => checked((byte)ToIntegral(source)),
                Target.Double => Convert.ToDouble(source, CultureInfo.InvariantCulture),
                Target.Decimal => Convert.ToDecimal(source, CultureInfo.InvariantCulture),
                _ => throw new InvalidOperationException(),
            };
            return new PsdNumber(converted, castPosition);
        }
        catch (OverflowException)
        {
            throw CannotConvert(operand, typeName, castPosition, "the value is out of range");
        }
    }

    private static string StripSystemPrefix(string typeName) =>
        typeName.StartsWith("System.", StringComparison.OrdinalIgnoreCase) ? typeName["System.".Length..] : typeName;

    /// <summary>Whole-number view of a numeric value, rounding half to even like PowerShell.</summary>
    private static decimal ToIntegral(object source) => source switch
    {
        double d when !double.IsFinite(d) || Math.Abs(d) > 7.9e28 => throw new OverflowException(),
        double d => (decimal)Math.Round(d, MidpointRounding.ToEven),
        decimal m => Math.Round(m, MidpointRounding.ToEven),
        _ => Convert.ToDecimal(source, CultureInfo.InvariantCulture),
    };

    private static string ToText(PsdValue operand, SourcePosition castPosition, string typeName) => operand switch
    {
        PsdNull => "",
        PsdString s => s.Value,
        PsdBoolean b => b.Value ? "True" : "False",
        PsdNumber n => n.ToString(),
        // Arrays join with a space, PowerShell's default $OFS.
        PsdArray a => string.Join(" ", a.Items.Select(item => ToText(item, castPosition, typeName))),
        _ => throw CannotConvert(operand, typeName, castPosition),
    };

    private static bool ToBoolean(PsdValue operand, SourcePosition castPosition, string typeName) => operand switch
    {
        PsdNull => false,
        PsdBoolean b => b.Value,
        PsdString s => s.Value.Length > 0,
        PsdNumber n => n.ToDouble() != 0,
        PsdArray a => a.Count > 0,
        _ => throw CannotConvert(operand, typeName, castPosition),
    };

    private static ManifestParseException CannotConvert(PsdValue operand, string typeName, SourcePosition castPosition, string? detail = null)
    {
        var shown = operand switch
        {
            PsdString s => $"'{s.Value}'",
            PsdNumber or PsdBoolean => operand.ToString(),
            _ => $"a {operand.KindName}",
        };
        return new ManifestParseException(castPosition,
            $"Cannot convert {shown} to [{typeName}]" + (detail is null ? "" : $": {detail}"));
    }
}
