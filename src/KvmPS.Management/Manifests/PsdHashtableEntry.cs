namespace KvmPS.Management.Manifests;

/// <summary>One <c>key = value</c> pair; the key keeps its own position for "unknown key" errors.</summary>
public sealed record PsdHashtableEntry(string Key, SourcePosition KeyPosition, PsdValue Value);
