using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Export-KvmVm: copies a VM that is off or saved (definition, disks, checkpoints, saved state) into PATH/NAME (Hyper-V's Export-VM).</summary>
[Cmdlet(VerbsData.Export, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(KvmVm))]
public sealed class ExportKvmVmCommand : KvmVmCmdletBase
{
    /// <summary>The folder the VM's folder is created in.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string? Path { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        var path = ResolvePath(Path!);
        if (!Output.ShouldProcess(name, $"Export VM to '{System.IO.Path.Combine(path, name)}'"))
            return;
        var result = Manager.Export(name, path);
        Output.WriteVerbose($"VM '{name}' exported to '{result.Path}' ({result.Snapshots} checkpoint(s){(result.IncludesSavedState ? ", saved state" : "")}, {result.SizeBytes} bytes).");
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
