using System.Management.Automation;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Remote;
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

    /// <summary>The SSH user for manifests whose HostName names no user (<c>'h2'</c> rather than <c>'root@h2'</c>).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? UserName { get; set; }

    /// <summary>The private key to log in to the hosts manifests name (key-based only; default: ssh's keys and agent).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? KeyFilePath { get; set; }

    protected sealed override void End()
    {
        RoutedManifests routed;
        try
        {
            if (UserName is not null)
                SshTarget.ValidateUserName(UserName);
            routed = ManifestRouting.Split(_paths.Distinct(StringComparer.Ordinal), UserName);
        }
        catch (InvalidRemoteNameException e)
        {
            throw new KvmParameterException("UserName", e.Value, e.Message, e);
        }
        catch (DesiredStateException e)
        {
            Output.WriteError(new KvmError(e, InvalidManifestErrorId, ErrorCategory.ParserError, e.File));
            return;
        }

        DesiredHostState? desired = null;
        if (routed.LocalFiles.Count > 0 || !routed.HasRemote)
        {
            try
            {
                desired = DesiredStateReader.ReadFiles(routed.LocalFiles);
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
        }
        var remote = new List<RemoteManifestRun>();
        if (routed.HasRemote)
        {
            var options = SshTransportOptions.FromEnvironment() with { KeyFilePath = KeyFilePath is null ? null : ResolvePath(KeyFilePath) };
            var transport = new SshTransport(options);
            foreach (var manifest in routed.Remote)
            {
                string text;
                try
                {
                    text = File.ReadAllText(manifest.Path);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    Output.WriteError(new KvmError(e, InvalidManifestErrorId, ErrorCategory.ReadError, manifest.Path));
                    return;
                }
                remote.Add(new RemoteManifestRun(manifest, new RemoteReconciler(new RemoteKvmps(manifest.Host, transport)), text, options.KeyFilePath));
            }
        }
        EndWithManifests(desired, remote);
    }

    /// <summary>
    /// Runs once, after the pipeline, with every manifest for this host read (<paramref name="desired"/>; null when
    /// every manifest names another host) and the manifests for other hosts (<paramref name="remote"/>, docs/remote.md).
    /// </summary>
    protected abstract void EndWithManifests(DesiredHostState? desired, IReadOnlyList<RemoteManifestRun> remote);

    /// <summary>A result of another host's manifest, with the host it is for (a HostName note property; local results have none).</summary>
    internal static PSObject ForHost(object result, string hostName)
    {
        var wrapped = PSObject.AsPSObject(result);
        wrapped.Properties.Add(new PSNoteProperty("HostName", hostName));
        return wrapped;
    }

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

/// <summary>One manifest naming another host: its file, its text and the reconciler that runs it there.</summary>
public sealed record RemoteManifestRun(RemoteManifest Manifest, RemoteReconciler Reconciler, string Text, string? KeyFilePath)
{
    public string HostName => Reconciler.HostName;
}
