using KvmPS.PowerShell.Completers;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Remove-KvmDisk: detaches a disk from the VM (a running guest releases it first) and its definition. The image file is left as it is.</summary>
[Cmdlet(VerbsCommon.Remove, "KvmDisk", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class RemoveKvmDiskCommand : KvmRemoteVmCmdletBase
{
    /// <summary>The disk's path as in the definition, or the full path of its image.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmDeviceCompleter))]
    public string Path { get; set; } = "";

    /// <summary>On a running VM: how long to wait for the guest to release the device (default 30 s).</summary>
    [Parameter]
    [ValidateRange(0, LiveChangeParameters.MaximumTimeoutSec)]
    public int? TimeoutSec { get; set; }

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
        var wanted = System.IO.Path.IsPathRooted(Path) || Path.StartsWith('~') ? ResolvePath(Path) : Path;
        var disk = Manager.FindDisk(name, wanted);
        var scope = LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
        if (!Output.ShouldProcess(name, $"Detach disk '{disk.Path}'{LiveChangeParameters.Describe(scope)} (the image file is kept)"))
            return;
        ReportChange(Manager.DetachDisk(name, wanted, scope, TimeoutSec is { } seconds ? TimeSpan.FromSeconds(seconds) : null), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    /// <summary>-HostName: kvmps vm detach-disk there; -Path is the disk as that host names it.</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var options = new List<string>(LiveChangeParameters.Arguments(Live.IsPresent, Config.IsPresent));
        if (TimeoutSec is { } seconds)
            options.AddRange(["--timeout", Number(seconds)]);
        RemoteChange(remote, name, $"Detach disk '{Path}'{LiveChangeParameters.Describe(LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent))} (the image file is kept)",
            "detach-disk", options, [Path], PassThru.IsPresent);
    }
}
