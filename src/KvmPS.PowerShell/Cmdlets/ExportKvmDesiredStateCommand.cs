using System.Management.Automation;
using System.Text.Json;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Remote;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Export-KvmDesiredState: the VMs that exist now as a desired-state manifest (ManifestExporter), written to
/// -Path or, without it, to the pipeline as text. Names are collected over the pipeline: one manifest for all.
/// With -HostName the VMs are that host's (<c>kvmps export --json</c> there); the manifest then names the host
/// (<c>HostName = 'h2'</c>) and is written here.
/// </summary>
[Cmdlet(VerbsData.Export, "KvmDesiredState", SupportsShouldProcess = true)]
[OutputType(typeof(string), typeof(FileInfo))]
public sealed class ExportKvmDesiredStateCommand : KvmRemoteCmdletBase
{
    internal const string FileExistsErrorId = "ManifestFileExists";

    private readonly List<string> _names = new();
    private RemoteHost? _remote;
    private bool _local;

    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    [Alias("VMName")]
    public string[]? Name { get; set; }

    /// <summary>The .psd1 file to write (here, also with -HostName); without it the manifest text goes to the pipeline.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Path { get; set; }

    [Parameter]
    public SwitchParameter Force { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessLocal()
    {
        if (_remote is not null)
            throw KvmParameterException.Combination("HostName", null, $"one manifest describes one host: the VMs come from host '{_remote.Display}' and this host.");
        _local = true;
        if (Name is not null)
            _names.AddRange(Name);
    }

    internal override void ProcessRemote(RemoteHost remote)
    {
        if (_local || (_remote is not null && _remote.Display != remote.Display))
            throw KvmParameterException.Combination("HostName", remote.Display, $"one manifest describes one host: the VMs come from host '{remote.Display}' and {(_local ? "this host" : $"host '{_remote!.Display}'")}.");
        _remote = remote;
        if (Name is not null)
            _names.AddRange(Name);
    }

    protected override void End()
    {
        // Piped input that selected nothing exports nothing (not every VM, as a bare call does).
        var piped = MyInvocation.ExpectingInput;
        string text;
        int count;
        if (_remote is { } remote)
        {
            if (piped && _names.Count == 0)
                return;
            if (RemoteExport(remote) is not { } answer)
                return;
            (text, count) = answer;
        }
        else
        {
            var export = ManifestExporter.Export(Manager, _names.Count > 0 || piped ? _names : null);
            foreach (var missing in export.NotFound)
                Output.WriteError(KvmErrorMapping.VmNotFound(missing, Manager.StoreRoot));
            foreach (var warning in export.Warnings)
                Output.WriteWarning(warning);
            (text, count) = (export.Text, export.VmNames.Count);
        }
        if (Path is null)
        {
            Output.WriteObject(text);
            return;
        }
        var path = GetUnresolvedProviderPathFromPSPath(Path);
        var what = count == 1 ? "1 VM" : $"{count} VMs";
        if (!Output.ShouldProcess(path, $"Write a desired-state manifest describing {what}{(_remote is null ? "" : $" of host {_remote.Display}")}"))
            return;
        try
        {
            ManifestExporter.WriteFile(path, text, overwrite: Force.IsPresent);
        }
        catch (ManifestFileExistsException e)
        {
            Output.WriteError(new KvmError(e, FileExistsErrorId, ErrorCategory.ResourceExists, path));
            return;
        }
        // The provider's item, as Get-Item returns it (a bare FileInfo lacks the FileSystem view's properties).
        if (PassThru.IsPresent)
            foreach (var item in InvokeProvider.Item.Get(new[] { path }, force: true, literalPath: true))
                Output.WriteObject(item);
    }

    /// <summary>
    /// <c>kvmps export --json [-- NAMES]</c> there: its manifest with the host named in it, its warnings as warnings
    /// and names that matched no VM there as VmNotFound errors (exit status 5 still carries the answer). Null when the
    /// host failed (the error is written).
    /// </summary>
    private (string Text, int Count)? RemoteExport(RemoteHost remote)
    {
        JsonDocument json;
        try
        {
            json = remote.Kvmps.RunJson(["export", "--json", "--", .. _names], answeredExitCodes: [RemoteCommandFailedException.VmNotFoundExitCode]);
        }
        catch (RemoteHostException e)
        {
            Output.WriteError(RemoteHostErrors.Classify(e, remote.Display));
            return null;
        }
        using (json)
        {
            var root = json.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("manifest", out var manifest) || manifest.GetString() is not { } text)
                throw new RemoteProtocolException(remote.Display, "'export --json' printed no 'manifest' text");
            foreach (var missing in Strings(root, "notFound"))
                Output.WriteError(remote.VmNotFound(missing));
            foreach (var warning in Strings(root, "warnings"))
                Output.WriteWarning($"host '{remote.Display}': {warning}");
            return (ManifestExporter.WithHostName(text, remote.HostName), Strings(root, "vms").Count);
        }
    }

    private static List<string> Strings(JsonElement root, string name) =>
        root.TryGetProperty(name, out var values) && values.ValueKind == JsonValueKind.Array
            ? values.EnumerateArray().Select(v => v.GetString() ?? "").ToList()
            : [];
}
