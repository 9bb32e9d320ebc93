using KvmPS.PowerShell.Completers;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Remove-KvmPciPassthrough: takes passed-through PCI functions away from the VM.</summary>
[Cmdlet(VerbsCommon.Remove, "KvmPciPassthrough", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class RemoveKvmPciPassthroughCommand : KvmVmCmdletBase
{
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("PciAddress")]
    [ArgumentCompleter(typeof(VmDeviceCompleter))]
    public string[] Address { get; set; } = Array.Empty<string>();

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        var definition = Manager.GetDefinition(name);
        var remove = new HashSet<PciAddress>();
        foreach (var text in Address)
        {
            var address = KvmParameterException.Parse(nameof(Address), text, PciAddress.Parse);
            if (definition.PciPassthrough.Contains(address))
                remove.Add(address);
            else
                Output.WriteError(ErrorFor(new VmDeviceNotFoundException(name, "PciPassthrough", text, $"VM '{name}' has no PCI device {address}"), text));
        }
        if (remove.Count == 0 || !Output.ShouldProcess(name, $"Remove PCI passthrough of {DisplayText.Count(remove.Count, "device")} {string.Join(", ", remove)}"))
            return;
        ReportChange(Manager.RemovePciPassthrough(name, remove), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
