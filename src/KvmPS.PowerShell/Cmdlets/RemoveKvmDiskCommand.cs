using KvmPS.PowerShell.Completers;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Remove-KvmDisk: detaches a disk from the VM's definition. The image file is left as it is.</summary>
[Cmdlet(VerbsCommon.Remove, "KvmDisk", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class RemoveKvmDiskCommand : KvmVmCmdletBase
{
    /// <summary>The disk's path as in the definition, or the full path of its image.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmDeviceCompleter))]
    public string Path { get; set; } = "";

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        var wanted = System.IO.Path.IsPathRooted(Path) || Path.StartsWith('~') ? ResolvePath(Path) : Path;
        var disk = Manager.FindDisk(name, wanted);
        if (!Output.ShouldProcess(name, $"Detach disk '{disk.Path}' (the image file is kept)"))
            return;
        ReportChange(Manager.DetachDisk(name, wanted), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
