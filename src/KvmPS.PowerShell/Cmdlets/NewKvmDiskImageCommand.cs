using KvmPS.Management.Lifecycle;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>New-KvmDiskImage: creates a sparse raw or qcow2 image (optionally on a backing image).</summary>
[Cmdlet(VerbsCommon.New, "KvmDiskImage", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmDiskImage))]
public sealed class NewKvmDiskImageCommand : KvmCmdletBase
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("FullName")]
    public string Path { get; set; } = "";

    /// <summary>Virtual size; a multiple of 512. Optional with -BackingPath (then the backing image's size).</summary>
    [Parameter(Position = 1)]
    [ValidateRange(512, long.MaxValue)]
    public long? SizeBytes { get; set; }

    /// <summary>Raw or Qcow2; by default qcow2 for *.qcow2 names or with -BackingPath, raw otherwise.</summary>
    [Parameter]
    public DiskFormat? Format { get; set; }

    /// <summary>Create a copy-on-write qcow2 image over this base image.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? BackingPath { get; set; }

    protected override void Process()
    {
        var path = ResolvePath(Path);
        var backing = BackingPath is null ? null : ResolvePath(BackingPath);
        var format = Format ?? DiskDefinition.DefaultFormat(path, backing);
        if (SizeBytes is null && backing is null)
            throw KvmParameterException.Combination(nameof(SizeBytes), null, "Give -SizeBytes, or -BackingPath to take the size of the backing image.");
        if (format == DiskFormat.Raw && backing is not null)
            throw new KvmParameterException(nameof(BackingPath), BackingPath, "a backing image needs the qcow2 format (-Format Qcow2)");
        if (SizeBytes is { } s && s % DiskDefinition.SectorBytes != 0)
            throw new KvmParameterException(nameof(SizeBytes), s, $"must be a multiple of {DiskDefinition.SectorBytes} (got {s})");
        if (File.Exists(path))
        {
            Output.WriteError(new KvmError(new IOException($"'{path}' already exists; KvmPS does not overwrite disk images"),
                KvmErrorIds.DiskImageExists, ErrorCategory.ResourceExists, path));
            return;
        }
        var size = SizeBytes is { } bytes ? DisplayText.Bytes(bytes) : "the size of " + backing;
        if (!Output.ShouldProcess(path, $"Create {format} disk image ({size})"))
            return;
        StorageDiskImageCreator.Create(path, format, SizeBytes ?? 0, backing);
        var virtualSize = SizeBytes ?? ReadVirtualSize(path);
        Output.WriteObject(new KvmDiskImage
        {
            Path = path,
            Format = format,
            SizeBytes = virtualSize,
            FileSizeBytes = new FileInfo(path).Length,
            BackingPath = backing,
        });
    }

    private static long ReadVirtualSize(string path)
    {
        using var image = KvmPS.Storage.DiskImageFactory.Open(path, KvmPS.Storage.DiskImageFormat.Auto, readOnly: true);
        return (long)image.SizeBytes;
    }
}
