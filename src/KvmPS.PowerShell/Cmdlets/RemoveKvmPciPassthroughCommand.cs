using KvmPS.PowerShell.Completers;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Remove-KvmPciPassthrough: takes passed-through PCI functions (-Address) or vfio-user devices (-VfioUserSocket) away from the VM.</summary>
[Cmdlet(VerbsCommon.Remove, "KvmPciPassthrough", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm))]
public sealed class RemoveKvmPciPassthroughCommand : KvmPassthroughCmdletBase
{
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("PciAddress", "HostDevice")]
    [ArgumentCompleter(typeof(VmDeviceCompleter))]
    public string[] Address { get; set; } = Array.Empty<string>();

    /// <summary>vfio-user sockets to detach (as Get-KvmVm's VfioUserDevices shows them).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmDeviceCompleter))]
    public string[] VfioUserSocket { get; set; } = Array.Empty<string>();

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        RequireDevices(Address, VfioUserSocket);
        var definition = Manager.GetDefinition(name);
        RemoveVfioUser(name, definition);
        if (Address.Length == 0)
        {
            if (PassThru.IsPresent)
                Output.WriteObject(new KvmVm(Manager.Get(name)));
            return;
        }
        var remove = Pick(name, Address, t => KvmParameterException.Parse(nameof(Address), t, PciAddress.Parse), definition.PciPassthrough, attach: false,
            "PciPassthrough", PciLabel);
        if (remove.Count == 0 || !Output.ShouldProcess(name, $"Remove PCI passthrough of {DisplayText.Count(remove.Count, "device")} {string.Join(", ", remove)}"))
            return;
        ReportChange(Manager.RemovePciPassthrough(name, remove), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    private void RemoveVfioUser(string name, VmDefinition definition)
    {
        var remove = Pick(name, VfioUserSocket, ResolvePath, definition.VfioUserDevices, attach: false, "VfioUserDevices", VfioUserLabel);
        if (remove.Count == 0 || !Output.ShouldProcess(name, $"Remove {DisplayText.Count(remove.Count, "vfio-user device")} {string.Join(", ", remove.Select(s => $"'{s}'"))}"))
            return;
        ReportChange(Manager.RemoveVfioUserDevices(name, remove), restartIfNeeded: false);
    }

    /// <summary>-HostName: kvmps vm detach-pci there per device.</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        RequireDevices(Address, VfioUserSocket);
        RemoteEach(remote, name, "detach-pci", "Remove passthrough of", Address, VfioUserSocket, PassThru.IsPresent, restartIfNeeded: false);
    }
}
