using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace KvmPS.PowerShell.Completers;

/// <summary>Tab completion of ISO images (*.iso) and folders for -Path of the DVD cmdlets and New-KvmVm -DvdPath.</summary>
public sealed class IsoPathCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters) =>
        Complete(CurrentLocation(), wordToComplete).Select(text => new CompletionResult(text, text, CompletionResultType.ProviderItem, text)).ToList();

    /// <summary>The PowerShell location (Set-Location), which is not the process's directory: asked of the runspace completing.</summary>
    private static string CurrentLocation()
    {
        try
        {
            using var shell = System.Management.Automation.PowerShell.Create(RunspaceMode.CurrentRunspace);
            shell.AddCommand("Microsoft.PowerShell.Management\\Get-Location");
            if (shell.Invoke<PathInfo>().FirstOrDefault() is { Provider.Name: "FileSystem" } location)
                return location.ProviderPath;
        }
        catch (Exception e) when (e is InvalidOperationException or PSInvalidOperationException or RuntimeException)
        {
        }
        return Environment.CurrentDirectory;
    }

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
