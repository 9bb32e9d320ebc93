using System.Globalization;

namespace KvmPS.Management.Manifests;

/// <summary>
/// A numeric literal or numeric cast. <see cref="Value"/> holds the .NET type PowerShell itself would
/// produce (int, long, decimal, double, or byte/uint/ulong after a cast), so consumers can tell
/// <c>1gb</c> (int) from <c>1.5gb</c> (double) when they care.
/// </summary>
public sealed class PsdNumber : PsdValue
{
    public PsdNumber(object value, SourcePosition position) : base(position)
    {
        if (value is not (int or long or decimal or double or byte or uint or ulong))
            throw new ArgumentException($"Unsupported numeric type {value.GetType()}.", nameof(value));
        Value = value;
    }

    public object Value { get; }
    public override string KindName => "number";
    public override object? ToPlainObject() => Value;

    /// <summary>True for integer types, and for decimals/doubles with no fractional part.</summary>
    public bool IsWholeNumber => Value switch
    {
        double d => double.IsFinite(d) && Math.Floor(d) == d,
        decimal m => decimal.Truncate(m) == m,
        _ => true,
    };

    /// <summary>The value as a long when it is a whole number within range.</summary>
    public bool TryGetInt64(out long result)
    {
        switch (Value)
        {
            case int i: result = i; return true;
            case long l: result = l; return true;
            case byte b: result = b; return true;
            case uint u: result = u; return true;
            case ulong ul when ul <= long.MaxValue: result = (long)ul; return true;
            case decimal m when decimal.Truncate(m) == m && m >= long.MinValue && m <= long.MaxValue:
                result = (long)m; return true;
            // 2^63 is exactly representable and must be excluded, hence the strict upper bound.
            case double d when double.IsFinite(d) && Math.Floor(d) == d && d >= -9.2233720368547758E18 && d < 9.2233720368547758E18:
                result = (long)d; return true;
            default: result = 0; return false;
        }
    }

    /// <summary>The value as a ulong when it is a non-negative whole number within range.</summary>
    public bool TryGetUInt64(out ulong result)
    {
        switch (Value)
        {
            case ulong ul: result = ul; return true;
            case decimal m when decimal.Truncate(m) == m && m >= 0 && m <= ulong.MaxValue:
                result = (ulong)m; return true;
            case double d when double.IsFinite(d) && Math.Floor(d) == d && d >= 0 && d < 1.8446744073709552E19:
                result = (ulong)d; return true;
            default:
                if (TryGetInt64(out var l) && l >= 0) { result = (ulong)l; return true; }
                result = 0; return false;
        }
    }

    public double ToDouble() => Convert.ToDouble(Value, CultureInfo.InvariantCulture);

    public override string ToString() => Convert.ToString(Value, CultureInfo.InvariantCulture)!;
}
