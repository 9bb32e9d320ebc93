namespace KvmPS.Management.Manifests;

/// <summary>
/// A value read from a PowerShell data file. Every value remembers where it came from so that later
/// schema checks ("unknown key", "wrong type") can point at the offending text.
/// </summary>
public abstract class PsdValue
{
    private protected PsdValue(SourcePosition position) => Position = position;

    public SourcePosition Position { get; }

    /// <summary>Human-readable kind used in error messages ("string", "hashtable", ...).</summary>
    public abstract string KindName { get; }

    /// <summary>
    /// The value as plain .NET objects: string, int/long/decimal/double/..., bool, null, <c>object?[]</c>,
    /// and <see cref="PsdHashtable"/>s become case-insensitive insertion-ordered
    /// <see cref="System.Collections.Specialized.OrderedDictionary"/>s.
    /// </summary>
    public abstract object? ToPlainObject();
}
