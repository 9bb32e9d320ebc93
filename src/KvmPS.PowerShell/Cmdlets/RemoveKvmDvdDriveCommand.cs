using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Remove-KvmDvdDrive: removes a DVD drive from the VM's definition (a running VM keeps it until its next start). The ISO is left as it is.</summary>
[Cmdlet(VerbsCommon.Remove, "KvmDvdDrive", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm))]
public sealed class RemoveKvmDvdDriveCommand : KvmDvdCmdletBase
{
    /// <summary>The drive (0 = the first); needed when the VM has more than one.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("Index")]
    [ValidateRange(0, 63)]
    public int? ControllerLocation { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        var drives = Manager.Store.Get(name).DvdDrives;
        var index = ControllerLocation ?? 0;
        if (!Output.ShouldProcess(name, $"Remove DVD drive {index}" + (index < drives.Count && drives[index].Path is { } iso ? $" (holding '{iso}'; the file is kept)" : "")))
            return;
        // Management refuses a missing -ControllerLocation when the VM has several drives (which one is the caller's to say).
        ReportChange(Manager.RemoveDvdDrive(name, ControllerLocation), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    /// <summary>-HostName: kvmps vm dvd remove there (--drive when given; that host refuses a missing one for several drives).</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name) =>
        RemoteChange(remote, name, $"Remove DVD drive {ControllerLocation ?? 0} (the file is kept)", "dvd remove",
            ControllerLocation is { } index ? ["--drive", Number(index)] : [], [], PassThru.IsPresent);
}
