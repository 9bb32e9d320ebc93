namespace KvmPS.Management.Definitions;

/// <summary>A textual value (size, MAC address, PCI address, ...) could not be parsed.</summary>
public sealed class ValueFormatException : FormatException
{
    public ValueFormatException(string valueKind, string input, string reason)
        : base($"Invalid {valueKind} '{input}': {reason}")
    {
        ValueKind = valueKind;
        Input = input;
        Reason = reason;
    }

    /// <summary>What was being parsed ("size", "MAC address", ...).</summary>
    public string ValueKind { get; }

    /// <summary>The text that failed to parse.</summary>
    public string Input { get; }

    public string Reason { get; }
}
