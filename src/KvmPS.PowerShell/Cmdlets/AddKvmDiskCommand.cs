using KvmPS.Management.Lifecycle;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Add-KvmDisk: attaches a disk image to the VM (hot-plugged into a running one) and its definition, creating the image first with -SizeBytes.</summary>
[Cmdlet(VerbsCommon.Add, "KvmDisk", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class AddKvmDiskCommand : KvmRemoteVmCmdletBase
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

    /// <summary>-Path (and -BackingPath) name volumes of this storage pool; the definition keeps the pool and volume.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(KvmPS.PowerShell.Completers.StoragePoolNameCompleter))]
    public string? Pool { get; set; }

    /// <summary>Change the running VM now (and store it); refused when the VM is not running or cannot take it live.</summary>
    [Parameter]
    public SwitchParameter Live { get; set; }

    /// <summary>Store the change for the next start only: a running VM keeps its devices until it is restarted.</summary>
    [Parameter]
    public SwitchParameter Config { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Begin() => LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);

    protected override void ProcessVm(string name)
    {
        // Rooted (or ~) paths are resolved against the PowerShell location; relative ones stay relative to the VM's disk directory.
        var request = new DiskAttachRequest(DiskPath(Path, nameof(Path))!, Format, SizeBytes, DiskPath(BackingPath, nameof(BackingPath)), ReadOnly.IsPresent);
        var plan = Manager.PlanDiskAttach(name, request);
        var action = SizeBytes is { } size
            ? $"Create {plan.Disk.Format} image '{plan.FullPath}' ({SizeParser.Format(size)}) and attach it"
            : $"Attach disk '{plan.FullPath}'";
        var scope = LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
        if (!Output.ShouldProcess(name, action + LiveChangeParameters.Describe(scope)))
            return;
        ReportChange(Manager.AttachDisk(name, request, scope), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    /// <summary>With -Pool: a pool reference (the volume name checked, naming the parameter); else a store path.</summary>
    private string? DiskPath(string? path, string parameter)
    {
        if (path is null)
            return null;
        if (Pool is null)
            return StorePath(path);
        try
        {
            return new KvmPS.Management.Pools.StoragePoolManager(Manager.Store).VolumeReference(Pool, path);
        }
        catch (KvmPS.Management.Pools.StorageVolumeSettingException e)
        {
            throw new KvmParameterException(parameter, path, $"with -Pool this is a volume name in pool '{Pool}': {e.Reason}");
        }
    }

    private string StorePath(string path) => System.IO.Path.IsPathRooted(path) || path.StartsWith('~') ? ResolvePath(path) : path;

    /// <summary>-HostName: kvmps vm attach-disk there; -Path and -BackingPath are that host's (or volumes of its -Pool).</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var options = new List<string>(LiveChangeParameters.Arguments(Live.IsPresent, Config.IsPresent));
        if (Pool is not null)
            options.AddRange(["--pool", Pool]);
        if (SizeBytes is { } size)
            options.AddRange(["--size", Bytes(size)]);
        if (Format is { } format)
            options.AddRange(["--format", format.ToString().ToLowerInvariant()]);
        if (BackingPath is not null)
            options.AddRange(["--backing", BackingPath]);
        if (ReadOnly.IsPresent)
            options.Add("--read-only");
        var action = SizeBytes is { } bytes ? $"Create image '{Path}' ({SizeParser.Format(bytes)}) and attach it" : $"Attach disk '{Path}'";
        RemoteChange(remote, name, action + LiveChangeParameters.Describe(LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent)), "attach-disk",
            options, [Path], PassThru.IsPresent);
    }
}
