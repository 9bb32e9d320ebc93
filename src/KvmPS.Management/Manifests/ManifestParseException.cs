namespace KvmPS.Management.Manifests;

/// <summary>
/// A manifest is not valid PowerShell data-file syntax (or uses a construct data files forbid).
/// <see cref="Exception.Message"/> is <c>file:line:column: reason</c> so editors and CI logs can jump to it.
/// </summary>
public sealed class ManifestParseException : Exception
{
    public ManifestParseException(SourcePosition position, string reason)
        : base($"{position}: {reason}")
    {
        Position = position;
        Reason = reason;
    }

    public SourcePosition Position { get; }
    public string File => Position.File;
    public int Line => Position.Line;
    public int Column => Position.Column;

    /// <summary>The message without the location prefix.</summary>
    public string Reason { get; }
}
