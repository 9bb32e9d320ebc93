using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Remove-KvmDvdDrive: removes a DVD drive from the VM's definition (a running VM keeps it until its next start). The ISO is left as it is.</summary>
[Cmdlet(VerbsCommon.Remove, "KvmDvdDrive", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class RemoveKvmDvdDriveCommand : KvmDvdCmdletBase
{
    /// <summary>The drive (0 = the first); needed when the VM has more than one.</summary>
    [Parameter]
    [Alias("Index")]
    [ValidateRange(0, 63)]
    public int? ControllerLocation { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        var drives = Manager.Store.Get(name).DvdDrives;
        if (ControllerLocation is null && drives.Count > 1)
            throw new ManagementValidationException(name, "DvdDrives", $"the VM has {drives.Count} DVD drives; say which with -ControllerLocation (0 to {drives.Count - 1})");
        var index = ControllerLocation ?? 0;
        if (!Output.ShouldProcess(name, $"Remove DVD drive {index}" + (index < drives.Count && drives[index].Path is { } iso ? $" (holding '{iso}'; the file is kept)" : "")))
            return;
        ReportChange(Manager.RemoveDvdDrive(name, index), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
