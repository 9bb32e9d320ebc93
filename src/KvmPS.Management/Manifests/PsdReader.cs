namespace KvmPS.Management.Manifests;

/// <summary>
/// Reads PowerShell data files (<c>.psd1</c>) without PowerShell: the same language
/// <c>Import-PowerShellDataFile</c> accepts, with errors reported as <c>file:line:column: message</c>
/// (<see cref="ManifestParseException"/>).
/// </summary>
public static class PsdReader
{
    /// <summary>
    /// How deeply values may nest ('@{', '@(', '(', unary ',' and casts each open a level; the file's own hashtable
    /// is the first). Real manifests use four or five; the limit keeps a hostile file from overflowing the stack.
    /// </summary>
    public const int MaxNestingDepth = 64;

    /// <summary>Reads a data file from disk; its top level must be a single hashtable.</summary>
    public static PsdHashtable ReadDataFile(string path) => ParseDataFile(File.ReadAllText(path), path);

    /// <summary>Parses data-file text; <paramref name="fileName"/> is only used in positions and errors.</summary>
    public static PsdHashtable ParseDataFile(string text, string fileName = "<text>") =>
        new PsdParser(text, fileName).ParseDataFile();

    /// <summary>Parses a single data-language value (e.g. <c>512MB</c> or <c>@('a', 'b')</c>).</summary>
    public static PsdValue ParseValue(string text, string fileName = "<text>") =>
        new PsdParser(text, fileName).ParseStandaloneValue();
}
