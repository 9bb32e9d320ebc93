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

    /// <summary>Create the image as a volume of this storage pool: -Path is then the volume name, -BackingPath a volume of the same pool.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(KvmPS.PowerShell.Completers.StoragePoolNameCompleter))]
    public string? Pool { get; set; }

    protected override void Process()
    {
        if (Pool is not null)
        {
            CreateInPool(Pool);
            return;
        }
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

    /// <summary>-Pool: the same image creation as New-KvmVolume (StoragePoolManager.CreateVolume), shown as a disk image.</summary>
    private void CreateInPool(string pool)
    {
        var pools = new KvmPS.Management.Pools.StoragePoolManager(Manager.Store);
        if (KvmPS.Management.Pools.StoragePoolNames.VolumeNameProblem(Path) is { } problem)
            throw new KvmParameterException(nameof(Path), Path, $"with -Pool this is a volume name in pool '{pool}': '{Path}' {problem}");
        var target = pools.VolumePath(pool, Path);
        var format = Format ?? DiskDefinition.DefaultFormat(Path, BackingPath);
        var size = SizeBytes is { } bytes ? DisplayText.Bytes(bytes) : "the size of " + BackingPath;
        if (!Output.ShouldProcess(target, $"Create {format} disk image ({size}) in pool '{pool}'"))
            return;
        var volume = pools.CreateVolume(pool, Path, SizeBytes, Format, BackingPath);
        Output.WriteObject(new KvmDiskImage
        {
            Path = volume.Path,
            Format = volume.Format,
            SizeBytes = volume.CapacityBytes,
            FileSizeBytes = new FileInfo(volume.Path).Length,
            BackingPath = volume.BackingVolume is null ? null : System.IO.Path.Combine(System.IO.Path.GetDirectoryName(volume.Path)!, volume.BackingVolume),
        });
    }

    private static long ReadVirtualSize(string path)
    {
        using var image = KvmPS.Storage.DiskImageFactory.Open(path, KvmPS.Storage.DiskImageFormat.Auto, readOnly: true);
        return (long)image.SizeBytes;
    }
}
