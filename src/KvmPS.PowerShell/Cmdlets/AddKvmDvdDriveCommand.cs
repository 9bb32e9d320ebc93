using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Add-KvmDvdDrive: adds a CD/DVD drive, with an ISO or empty, to the VM's definition (a running VM gets it at its next start).</summary>
[Cmdlet(VerbsCommon.Add, "KvmDvdDrive", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(KvmDvdDrive))]
public sealed class AddKvmDvdDriveCommand : KvmDvdCmdletBase
{
    /// <summary>The ISO 9660 image; leave out for an empty drive.</summary>
    [Parameter(Position = 1)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(IsoPathCompleter))]
    public string? Path { get; set; }

    /// <summary>-Path names a volume of this storage pool.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(StoragePoolNameCompleter))]
    public string? Pool { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        CheckPool();
        var iso = Path is null ? null : IsoPath(Path, Pool);
        if (!Output.ShouldProcess(name, iso is null ? "Add an empty DVD drive" : $"Add a DVD drive with '{iso}'"))
            return;
        var result = Manager.AddDvdDrive(name, iso);
        ReportChange(result, restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(Drive(name, result.After.DvdDrives.Count - 1));
    }

    private void CheckPool()
    {
        if (Pool is not null && Path is null)
            throw KvmParameterException.Combination("Pool", Pool, "-Pool needs -Path (the volume's name in the pool)");
    }

    /// <summary>-HostName: kvmps vm dvd add there; -Path is that host's (or a volume of its -Pool); -PassThru: the new drive.</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        CheckPool();
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", Path is null ? "Add an empty DVD drive" : $"Add a DVD drive with '{Path}'"))
            return;
        RemoteChangeConfirmed(remote, name, "dvd add", RemoteIsoOptions(Pool), Path is null ? [] : [Path]);
        if (PassThru.IsPresent && RemoteDrives(remote, name) is { Count: > 0 } drives)
            Output.WriteObject(drives[^1]);
    }
}
