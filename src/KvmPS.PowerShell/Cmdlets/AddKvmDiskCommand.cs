using KvmPS.Management.Lifecycle;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Add-KvmDisk: attaches a disk image to the VM's definition, creating the image first with -SizeBytes.</summary>
[Cmdlet(VerbsCommon.Add, "KvmDisk", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class AddKvmDiskCommand : KvmVmCmdletBase
{
    /// <summary>Image path; a relative path is inside the VM's disk directory in the store.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>Raw or Qcow2; by default qcow2 for *.qcow2 names or a backing image, raw otherwise.</summary>
    [Parameter]
    public DiskFormat? Format { get; set; }

    /// <summary>Create a new image of this size (it must not exist yet).</summary>
    [Parameter]
    [ValidateRange(512, long.MaxValue)]
    public long? SizeBytes { get; set; }

    /// <summary>With -SizeBytes: create a qcow2 image on top of this backing image.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? BackingPath { get; set; }

    [Parameter]
    public SwitchParameter ReadOnly { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    internal static DiskFormat DefaultFormat(string path, string? backingPath) =>
        backingPath is not null || path.EndsWith(".qcow2", StringComparison.OrdinalIgnoreCase) ? DiskFormat.Qcow2 : DiskFormat.Raw;

    protected override void ProcessVm(string name)
    {
        var store = Manager.Store;
        var diskPath = System.IO.Path.IsPathRooted(Path) || Path.StartsWith('~') ? ResolvePath(Path) : Path;
        var backing = BackingPath is null ? null : System.IO.Path.IsPathRooted(BackingPath) || BackingPath.StartsWith('~') ? ResolvePath(BackingPath) : BackingPath;
        var format = Format ?? DefaultFormat(diskPath, backing);
        var fullPath = store.ResolveDiskPath(name, diskPath);
        var disk = new DiskDefinition(diskPath, format, null, Switch(ReadOnly), backing);
        if (!Output.ShouldProcess(name, SizeBytes is { } size ? $"Create {format} image '{fullPath}' ({SizeParser.Format(size)}) and attach it" : $"Attach disk '{fullPath}'"))
            return;

        var created = false;
        if (SizeBytes is { } sizeBytes)
        {
            StorageDiskImageCreator.Create(fullPath, format, sizeBytes, backing is null ? null : store.ResolveDiskPath(name, backing));
            created = true;
        }
        else if (!File.Exists(fullPath))
        {
            Output.WriteError(new KvmError(new FileNotFoundException($"Disk image '{fullPath}' does not exist; give -SizeBytes to create it", fullPath),
                KvmErrorIds.DiskImageNotFound, ErrorCategory.ObjectNotFound, fullPath));
            return;
        }
        try
        {
            var result = Manager.Update(name, d => d with { Disks = new ValueList<DiskDefinition>(d.Disks.Append(disk)) });
            ReportChange(result, restartIfNeeded: false);
        }
        catch when (created)
        {
            File.Delete(fullPath);
            throw;
        }
        if (Switch(PassThru))
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    private string ResolvePath(string path) =>
        OutputOverride is null ? GetUnresolvedProviderPathFromPSPath(path) : System.IO.Path.GetFullPath(path);
}
