using System.Management.Automation;
using KvmPS.Management.Definitions;
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
    public string[] Address { get; set; } = Array.Empty<string>();

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        var definition = Manager.Store.Get(name);
        var remove = new HashSet<PciAddress>();
        foreach (var text in Address)
        {
            var address = PciAddress.Parse(text);
            if (definition.PciPassthrough.Contains(address))
                remove.Add(address);
            else
                Output.WriteError(new KvmError(new ItemNotFoundException($"VM '{name}' has no PCI device {address}"),
                    KvmErrorIds.DeviceNotFound, ErrorCategory.ObjectNotFound, text));
        }
        if (remove.Count == 0 || !Output.ShouldProcess(name, $"Remove PCI passthrough of {string.Join(", ", remove)}"))
            return;
        var result = Manager.Update(name, d => d with { PciPassthrough = new ValueList<PciAddress>(d.PciPassthrough.Where(a => !remove.Contains(a))) });
        ReportChange(result, restartIfNeeded: false);
        if (Switch(PassThru))
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
