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
    public string Path { get; set; } = "";

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        var store = Manager.Store;
        var definition = store.Get(name);
        var wanted = System.IO.Path.IsPathRooted(Path) ? System.IO.Path.GetFullPath(Path) : null;
        var disk = definition.Disks.FirstOrDefault(d => d.Path == Path || (wanted is not null && store.ResolveDiskPath(name, d.Path) == wanted));
        if (disk is null)
        {
            Output.WriteError(new KvmError(new ItemNotFoundException($"VM '{name}' has no disk '{Path}'"), KvmErrorIds.DeviceNotFound, ErrorCategory.ObjectNotFound, Path));
            return;
        }
        if (!Output.ShouldProcess(name, $"Detach disk '{disk.Path}' (the image file is kept)"))
            return;
        var result = Manager.Update(name, d => d with { Disks = new ValueList<DiskDefinition>(d.Disks.Where(x => x.Path != disk.Path)) });
        ReportChange(result, restartIfNeeded: false);
        if (Switch(PassThru))
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
