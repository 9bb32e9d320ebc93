using KvmPS.Management.Lifecycle;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// New-KvmDiskImage: creates a sparse raw or qcow2 image (optionally on a backing image), here or with -HostName on
/// that host (<c>kvmps disk create --json</c> there). The checks and the creation are <see cref="DiskImageFiles"/>'s.
/// </summary>
[Cmdlet(VerbsCommon.New, "KvmDiskImage", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmDiskImage))]
public sealed class NewKvmDiskImageCommand : KvmRemoteCmdletBase
{
    internal const string RemoteTypeName = "KvmPS.RemoteDiskImage";

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

    private string SizeText(string? backing) => SizeBytes is { } bytes ? DisplayText.Bytes(bytes) : "the size of " + backing;

    protected override void ProcessLocal()
    {
        try
        {
            if (Pool is not null)
            {
                var pools = new KvmPS.Management.Pools.StoragePoolManager(Manager.Store);
                var target = DiskImageFiles.PoolVolumePath(pools, Pool, Path);
                var poolFormat = Format ?? DiskDefinition.DefaultFormat(Path, BackingPath);
                if (Output.ShouldProcess(target, $"Create {poolFormat} disk image ({SizeText(BackingPath)}) in pool '{Pool}'"))
                    Output.WriteObject(Wrap(DiskImageFiles.CreateInPool(pools, Pool, Path, SizeBytes, Format, BackingPath)));
                return;
            }
            var path = ResolvePath(Path);
            var backing = BackingPath is null ? null : ResolvePath(BackingPath);
            var format = DiskImageFiles.Check(path, SizeBytes, Format, backing);
            if (File.Exists(path))
            {
                Output.WriteError(new KvmError(new IOException($"'{path}' already exists; KvmPS does not overwrite disk images"),
                    KvmErrorIds.DiskImageExists, ErrorCategory.ResourceExists, path));
                return;
            }
            if (Output.ShouldProcess(path, $"Create {format} disk image ({SizeText(backing)})"))
                Output.WriteObject(Wrap(DiskImageFiles.Create(path, SizeBytes, Format, backing)));
        }
        catch (DiskImageRequestException e)
        {
            throw new KvmParameterException(e.Input, e.Value, e.Message, e);
        }
    }

    /// <summary>
    /// On -HostName: <c>kvmps disk create --json</c> there, with -Path and -BackingPath as that host's paths (sent as
    /// given, not resolved here); the answer is a <c>KvmPS.RemoteDiskImage</c> naming the host. The remote kvmps makes the same checks.
    /// </summary>
    internal override void ProcessRemote(RemoteHost remote)
    {
        var where = Pool is null ? Path : $"{Pool}/{Path}";
        if (!Output.ShouldProcess($"{where} on host {remote.Display}", $"Create {Format?.ToString() ?? "a"} disk image ({SizeText(BackingPath)})"))
            return;
        var arguments = new List<string> { "disk", "create", "--json" };
        if (SizeBytes is { } size)
            arguments.AddRange(["--size", Bytes(size)]);
        if (Format is { } format)
            arguments.AddRange(["--format", format.ToString().ToLowerInvariant()]);
        if (BackingPath is not null)
            arguments.AddRange(["--backing", BackingPath]);
        if (Pool is not null)
            arguments.AddRange(["--pool", Pool]);
        arguments.AddRange(["--", Path]);
        foreach (var image in remote.Objects(arguments, RemoteTypeName))
            Output.WriteObject(image);
    }

    private static KvmDiskImage Wrap(CreatedDiskImage image) => new()
    {
        Path = image.Path,
        Format = image.Format,
        SizeBytes = image.SizeBytes,
        FileSizeBytes = image.FileSizeBytes,
        BackingPath = image.BackingPath,
    };
}
