using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace KvmPS.PowerShell.Completers;

/// <summary>Tab completion of ISO images (*.iso) and folders for -Path of the DVD cmdlets and New-KvmVm -DvdPath.</summary>
public sealed class IsoPathCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters) =>
        Complete(Environment.CurrentDirectory, wordToComplete).Select(text => new CompletionResult(text, text, CompletionResultType.ProviderItem, text)).ToList();

    /// <summary>Folders and *.iso files whose path starts with <paramref name="word"/> (relative to <paramref name="directory"/>).</summary>
    internal static IReadOnlyList<string> Complete(string directory, string? word)
    {
        var typed = (word ?? "").Trim('\'', '"');
        var folder = Path.GetDirectoryName(typed);
        var prefix = Path.GetFileName(typed);
        var searched = string.IsNullOrEmpty(folder) ? directory : Path.Combine(directory, folder);
        try
        {
            var entries = new DirectoryInfo(searched).EnumerateFileSystemInfos(prefix + "*")
                .Where(e => e is DirectoryInfo || e.Name.EndsWith(".iso", StringComparison.OrdinalIgnoreCase))
                .Select(e => (string.IsNullOrEmpty(folder) ? e.Name : Path.Combine(folder, e.Name)) + (e is DirectoryInfo ? "/" : ""))
                .Order(StringComparer.Ordinal).Take(200).ToList();
            return entries.Select(e => e.Contains(' ') ? $"'{e}'" : e).ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return [];
        }
    }
}
