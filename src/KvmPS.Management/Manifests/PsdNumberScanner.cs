using System.Globalization;
using System.Numerics;

namespace KvmPS.Management.Manifests;

/// <summary>
/// PowerShell numeric literals: decimal/real/hex, optional sign, type suffix <c>L</c> (long) or
/// <c>d</c> (decimal), then an optional 1024-based multiplier <c>kb mb gb tb pb</c>. Without a suffix the
/// result type follows PowerShell: int, else long, else decimal, else double; reals are double.
/// </summary>
internal static class PsdNumberScanner
{
    public enum Outcome { NotANumber, Number, Invalid }

    /// <summary>Whether a number literal starts at <paramref name="start"/> (digit, ".5", "-1", "+1").</summary>
    public static bool StartsNumber(string text, int start)
    {
        var i = start;
        if (i < text.Length && IsSign(text[i]))
            i++;
        if (i >= text.Length)
            return false;
        if (char.IsAsciiDigit(text[i]))
            return true;
        return text[i] == '.' && i + 1 < text.Length && char.IsAsciiDigit(text[i + 1]);
    }

    /// <summary>
    /// Scans a number at <paramref name="start"/>. On <see cref="Outcome.Invalid"/>, <paramref name="error"/>
    /// says why and <paramref name="end"/> is the end of the offending word.
    /// </summary>
    public static Outcome Scan(string text, int start, out int end, out object? value, out string? error)
    {
        value = null;
        error = null;
        end = start;
        if (!StartsNumber(text, start))
            return Outcome.NotANumber;

        var i = start;
        var negative = false;
        if (IsSign(text[i]))
        {
            negative = text[i] != '+';
            i++;
        }

        var isHex = false;
        var isReal = false;
        string digits;
        if (text[i] == '0' && i + 2 < text.Length && (text[i + 1] is 'x' or 'X') && char.IsAsciiHexDigit(text[i + 2]))
        {
            isHex = true;
            i += 2;
            var hexStart = i;
            while (i < text.Length && char.IsAsciiHexDigit(text[i]))
                i++;
            digits = text[hexStart..i];
        }
        else
        {
            var numberStart = i;
            while (i < text.Length && char.IsAsciiDigit(text[i]))
                i++;
            if (i + 1 < text.Length && text[i] == '.' && char.IsAsciiDigit(text[i + 1]))
            {
                isReal = true;
                i++;
                while (i < text.Length && char.IsAsciiDigit(text[i]))
                    i++;
            }
            if (i < text.Length && (text[i] is 'e' or 'E'))
            {
                var j = i + 1;
                if (j < text.Length && (text[j] is '+' or '-'))
                    j++;
                if (j < text.Length && char.IsAsciiDigit(text[j]))
                {
                    isReal = true;
                    i = j;
                    while (i < text.Length && char.IsAsciiDigit(text[i]))
                        i++;
                }
            }
            digits = text[numberStart..i];
        }

        var suffix = '\0';
        if (i < text.Length && (text[i] is 'l' or 'L' || (!isHex && text[i] is 'd' or 'D')))
            suffix = char.ToLowerInvariant(text[i++]);

        BigInteger multiplier = 1;
        if (i + 1 < text.Length && (text[i + 1] is 'b' or 'B'))
        {
            var shift = char.ToLowerInvariant(text[i]) switch { 'k' => 10, 'm' => 20, 'g' => 30, 't' => 40, 'p' => 50, _ => 0 };
            if (shift != 0)
            {
                multiplier = BigInteger.One << shift;
                i += 2;
            }
        }

        if (i < text.Length && !PsdCharacters.EndsNumber(text[i]))
        {
            end = i;
            while (end < text.Length && !PsdCharacters.EndsBareWord(text[end]))
                end++;
            error = $"'{text[start..end]}' is not a valid number";
            return Outcome.Invalid;
        }

        end = i;
        var literal = text[start..end];
        try
        {
            value = isHex ? HexValue(digits, negative, suffix, multiplier)
                : isReal ? RealValue(digits, negative, suffix, multiplier)
                : IntegerValue(digits, negative, suffix, multiplier);
        }
        catch (OverflowException)
        {
            value = null;
        }
        if (value is null)
        {
            error = $"The numeric constant '{literal}' is out of range";
            return Outcome.Invalid;
        }
        return Outcome.Number;
    }

    /// <summary>Parses a whole string as a number (used by casts such as <c>[int]'0x10'</c>).</summary>
    public static bool TryParseWhole(string text, out object? value)
    {
        var trimmed = text.Trim();
        value = null;
        if (trimmed.Length == 0)
            return false;
        return Scan(trimmed, 0, out var end, out value, out _) == Outcome.Number && end == trimmed.Length;
    }

    // PowerShell accepts typographic dashes wherever it accepts '-'.
    private static bool IsSign(char c) => c is '-' or '+' or '\u2013' or '\u2014' or '\u2015';

    private static object? HexValue(string digits, bool negative, char suffix, BigInteger multiplier)
    {
        if (digits.Length > 16 && digits.TrimStart('0').Length > 16)
            return null;
        var bits = ulong.Parse(digits, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        // Hex literals are bit patterns: 0xFFFFFFFF is the int -1, as in PowerShell.
        BigInteger magnitude = suffix == 'l' || bits > uint.MaxValue ? (long)bits : (int)(uint)bits;
        var result = (negative ? -magnitude : magnitude) * multiplier;
        return suffix == 'l' ? (object)(long)result : SmallestIntegerType(result);
    }

    private static object? IntegerValue(string digits, bool negative, char suffix, BigInteger multiplier)
    {
        var magnitude = BigInteger.Parse(digits, NumberStyles.None, CultureInfo.InvariantCulture);
        var result = (negative ? -magnitude : magnitude) * multiplier;
        return suffix switch
        {
            'l' => (long)result,
            'd' => (decimal)result,
            _ => SmallestIntegerType(result),
        };
    }

    private static object? RealValue(string digits, bool negative, char suffix, BigInteger multiplier)
    {
        var sign = negative ? "-" : "";
        switch (suffix)
        {
            case 'd':
                return decimal.Parse(sign + digits, NumberStyles.Float, CultureInfo.InvariantCulture) * (decimal)multiplier;
            case 'l':
                var rounded = Math.Round(double.Parse(sign + digits, NumberStyles.Float, CultureInfo.InvariantCulture) * (double)multiplier, MidpointRounding.ToEven);
                return rounded is >= long.MinValue and < 9.2233720368547758E18 ? (long)rounded : null;
            default:
                var real = double.Parse(sign + digits, NumberStyles.Float, CultureInfo.InvariantCulture) * (double)multiplier;
                return double.IsFinite(real) ? real : null;
        }
    }

    private static object SmallestIntegerType(BigInteger value)
    {
        if (value >= int.MinValue && value <= int.MaxValue)
            return (int)value;
        if (value >= long.MinValue && value <= long.MaxValue)
            return (long)value;
        if (value >= (BigInteger)decimal.MinValue && value <= (BigInteger)decimal.MaxValue)
            return (decimal)value;
        return (double)value;
    }
}
