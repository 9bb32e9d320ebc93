using System.Management.Automation;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Export-KvmVm: copies a VM that is off or saved (definition, disks, checkpoints, saved state) into PATH/NAME (Hyper-V's Export-VM).</summary>
[Cmdlet(VerbsData.Export, "KvmVm", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(KvmVm))]
public sealed class ExportKvmVmCommand : KvmRemoteVmCmdletBase
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

    /// <summary>-HostName: kvmps vm export there; -Path is a folder on that host (not resolved here).</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        if (!Output.ShouldProcess($"{name} on host {remote.Display}", $"Export VM to '{Path}' on that host"))
            return;
        using var json = remote.Run(["vm", "export", "--json", "--", name, Path!]);
        var result = json.RootElement;
        Output.WriteVerbose($"VM '{name}' on host '{remote.Display}' exported to '{result.GetProperty("path").GetString()}' ({result.GetProperty("snapshots")} checkpoint(s), {result.GetProperty("sizeBytes")} bytes).");
        if (PassThru.IsPresent)
            Output.WriteObject(remote.Vm(name));
    }
}
