using System.Management.Automation;
using KvmPS.Management.DesiredState;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Base of the desired-state cmdlets: <c>-Path</c> (manifest files; wildcards; by property name from the
/// pipeline, including <c>FullName</c> from Get-ChildItem). Paths are collected over the whole pipeline and
/// read together in the end step, because a VM may be defined in only one of the files.
/// </summary>
public abstract class KvmDesiredStateCmdletBase : KvmCmdletBase
{
    internal const string InvalidManifestErrorId = "InvalidManifest";

    private readonly List<string> _paths = new();

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [Alias("FullName", "PSPath", "LiteralPath")]
    public string[]? Path { get; set; }

    protected override void Process()
    {
        foreach (var path in Path ?? Array.Empty<string>())
            _paths.AddRange(Resolve(path));
    }

    protected sealed override void End()
    {
        DesiredHostState desired;
        try
        {
            desired = DesiredStateReader.ReadFiles(_paths.Distinct(StringComparer.Ordinal));
        }
        catch (DesiredStateException e)
        {
            Output.WriteError(new KvmError(e, InvalidManifestErrorId, ErrorCategory.ParserError, e.File));
            return;
        }
        catch (ArgumentException) when (_paths.Count == 0)
        {
            return; // every -Path was a wildcard that matched nothing (already reported)
        }
        EndWithManifests(desired);
    }

    /// <summary>Runs once, after the pipeline, with every manifest read.</summary>
    protected abstract void EndWithManifests(DesiredHostState desired);

    private IEnumerable<string> Resolve(string path)
    {
        if (!WildcardPattern.ContainsWildcardCharacters(path))
            return new[] { GetUnresolvedProviderPathFromPSPath(path) };
        try
        {
            var resolved = GetResolvedProviderPathFromPSPath(path, out _);
            if (resolved.Count == 0)
                Output.WriteError(new KvmError(new ItemNotFoundException($"No manifest matches '{path}'."), "ManifestNotFound", ErrorCategory.ObjectNotFound, path));
            return resolved;
        }
        catch (ItemNotFoundException e)
        {
            Output.WriteError(new KvmError(e, "ManifestNotFound", ErrorCategory.ObjectNotFound, path));
            return Array.Empty<string>();
        }
    }
}
