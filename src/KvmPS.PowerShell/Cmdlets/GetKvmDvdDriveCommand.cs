using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Get-KvmDvdDrive: the VM's CD/DVD drives and the ISO in each.</summary>
[Cmdlet(VerbsCommon.Get, "KvmDvdDrive", DefaultParameterSetName = NameSet)]
[OutputType(typeof(KvmDvdDrive))]
public sealed class GetKvmDvdDriveCommand : KvmDvdCmdletBase
{
    /// <summary>Only this drive.</summary>
    [Parameter]
    [Alias("Index")]
    [ValidateRange(0, 63)]
    public int? ControllerLocation { get; set; }

    protected override void ProcessVm(string name)
    {
        var definition = Manager.Store.Get(name);
        for (int i = 0; i < definition.DvdDrives.Count; i++)
            if (ControllerLocation is null || ControllerLocation == i)
                Output.WriteObject(Drive(name, i));
    }

    /// <summary>-HostName: kvmps vm dvd list there.</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        foreach (var drive in RemoteDrives(remote, name))
            if (ControllerLocation is null || Convert.ToInt64(drive.Properties["ControllerLocation"].Value, System.Globalization.CultureInfo.InvariantCulture) == ControllerLocation)
                Output.WriteObject(drive);
    }
}
