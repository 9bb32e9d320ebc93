using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.HostDevices;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Add-KvmPciPassthrough: gives host PCI functions to the VM (VFIO); applied live where supported, else at restart.</summary>
[Cmdlet(VerbsCommon.Add, "KvmPciPassthrough", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class AddKvmPciPassthroughCommand : KvmVmCmdletBase
{
    /// <summary>Host PCI addresses, DDDD:BB:DD.F (as Get-KvmHostPciDevice shows them).</summary>
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("PciAddress")]
    public string[] Address { get; set; } = Array.Empty<string>();

    [Parameter]
    public SwitchParameter RestartIfNeeded { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        var definition = Manager.GetDefinition(name);
        var host = new PciHostDevices();
        var add = new List<PciAddress>();
        foreach (var text in Address)
        {
            var address = KvmParameterException.Parse(nameof(Address), text, PciAddress.Parse);
            if (definition.PciPassthrough.Contains(address) || add.Contains(address))
            {
                Output.WriteError(ErrorFor(new VmDeviceAlreadyAttachedException(name, "PciPassthrough", text, $"VM '{name}' already has PCI device {address}"), text));
                continue;
            }
            PciPassthroughReadiness readiness;
            try { readiness = PciPassthroughCheck.Check(host, address); }
            catch (PciPassthroughException e)
            {
                Output.WriteError(new KvmError(e, KvmErrorIds.PciDeviceUnusable, ErrorCategory.InvalidArgument, text));
                continue;
            }
            foreach (var warning in readiness.Warnings) Output.WriteWarning(warning);
            add.Add(address);
        }
        if (add.Count == 0 || !Output.ShouldProcess(name, $"Pass through PCI {DisplayText.Count(add.Count, "device")} {string.Join(", ", add)}"))
            return;
        ReportChange(Manager.AddPciPassthrough(name, add), RestartIfNeeded.IsPresent);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
