using System.Management.Automation;
using KvmPS.Management.DesiredState;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Export-KvmDesiredState: the VMs that exist now as a desired-state manifest (ManifestExporter), written to
/// -Path or, without it, to the pipeline as text. Names are collected over the pipeline: one manifest for all.
/// </summary>
[Cmdlet(VerbsData.Export, "KvmDesiredState", SupportsShouldProcess = true)]
[OutputType(typeof(string), typeof(FileInfo))]
public sealed class ExportKvmDesiredStateCommand : KvmCmdletBase
{
    internal const string FileExistsErrorId = "ManifestFileExists";

    private readonly List<string> _names = new();

    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    [Alias("VMName")]
    public string[]? Name { get; set; }

    /// <summary>The .psd1 file to write; without it the manifest text goes to the pipeline.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Path { get; set; }

    [Parameter]
    public SwitchParameter Force { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Process()
    {
        if (Name is not null)
            _names.AddRange(Name);
    }

    protected override void End()
    {
        // Piped input that selected nothing exports nothing (not every VM, as a bare call does).
        var piped = MyInvocation.ExpectingInput;
        var export = ManifestExporter.Export(Manager, _names.Count > 0 || piped ? _names : null);
        foreach (var missing in export.NotFound)
            Output.WriteError(KvmErrorMapping.VmNotFound(missing, Manager.StoreRoot));
        foreach (var warning in export.Warnings)
            Output.WriteWarning(warning);
        if (Path is null)
        {
            Output.WriteObject(export.Text);
            return;
        }
        var path = GetUnresolvedProviderPathFromPSPath(Path);
        var what = export.VmNames.Count == 1 ? "1 VM" : $"{export.VmNames.Count} VMs";
        if (!Output.ShouldProcess(path, $"Write a desired-state manifest describing {what}"))
            return;
        try
        {
            ManifestExporter.WriteFile(path, export.Text, overwrite: Force.IsPresent);
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
}
