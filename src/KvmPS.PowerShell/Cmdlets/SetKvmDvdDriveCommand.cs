using System.Management.Automation;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Set-KvmDvdDrive: inserts an ISO into a DVD drive (-Path) or ejects its medium (-Eject). A running VM's drive
/// changes at once (the guest is told); a tray the guest has locked is refused with the VMM's reason.
/// </summary>
[Cmdlet(VerbsCommon.Set, "KvmDvdDrive", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmDvdDrive))]
public sealed class SetKvmDvdDriveCommand : KvmDvdCmdletBase
{
    /// <summary>The drive (0 = the first).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("Index")]
    [ValidateRange(0, 63)]
    public int ControllerLocation { get; set; }

    /// <summary>The ISO 9660 image to insert.</summary>
    [Parameter(Position = 1)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(IsoPathCompleter))]
    public string? Path { get; set; }

    /// <summary>-Path names a volume of this storage pool.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(StoragePoolNameCompleter))]
    public string? Pool { get; set; }

    /// <summary>Take the medium out (the drive stays, empty).</summary>
    [Parameter]
    public SwitchParameter Eject { get; set; }

    /// <summary>Change the running VM now (and store it); refused when the VM is not running.</summary>
    [Parameter]
    public SwitchParameter Live { get; set; }

    /// <summary>Store the change for the next start only.</summary>
    [Parameter]
    public SwitchParameter Config { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Begin()
    {
        LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
        if ((Path is null) == !Eject.IsPresent)
            throw KvmParameterException.Combination("Path", Path, "give either -Path (insert an ISO) or -Eject (take the medium out)");
    }

    protected override void ProcessVm(string name)
    {
        var iso = Path is null ? null : IsoPath(Path, Pool);
        var scope = LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
        var action = iso is null ? $"Eject the medium of DVD drive {ControllerLocation}" : $"Insert '{iso}' into DVD drive {ControllerLocation}";
        if (!Output.ShouldProcess(name, action + LiveChangeParameters.Describe(scope)))
            return;
        ReportChange(Manager.SetDvdMedia(name, ControllerLocation, iso, scope), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(Drive(name, ControllerLocation));
    }

    /// <summary>-HostName: kvmps vm attach-iso or eject-iso there, on drive -ControllerLocation; -PassThru: that drive.</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var scope = LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
        var action = Path is null ? $"Eject the medium of DVD drive {ControllerLocation}" : $"Insert '{Path}' into DVD drive {ControllerLocation}";
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", action + LiveChangeParameters.Describe(scope)))
            return;
        IEnumerable<string> options = [.. LiveChangeParameters.Arguments(Live.IsPresent, Config.IsPresent), "--drive", Number(ControllerLocation)];
        if (Path is null)
            RemoteChangeConfirmed(remote, name, "eject-iso", options, []);
        else
            RemoteChangeConfirmed(remote, name, "attach-iso", [.. options, .. RemoteIsoOptions(Pool)], [Path]);
        if (PassThru.IsPresent && RemoteDrives(remote, name) is { } drives && ControllerLocation < drives.Count)
            Output.WriteObject(drives[ControllerLocation]);
    }
}
