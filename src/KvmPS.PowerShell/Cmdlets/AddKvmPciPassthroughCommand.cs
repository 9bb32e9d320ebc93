using System.Management.Automation;
using KvmPS.Management.Definitions;
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

    /// <summary>Test seam: the sysfs reader used to check the host devices.</summary>
    internal PciHostDevices HostDevices { get; set; } = new();

    protected override void ProcessVm(string name)
    {
        var definition = Manager.Store.Get(name);
        var add = new List<PciAddress>();
        foreach (var text in Address)
        {
            var address = PciAddress.Parse(text);
            if (definition.PciPassthrough.Contains(address) || add.Contains(address))
            {
                Output.WriteError(new KvmError(new InvalidOperationException($"VM '{name}' already has PCI device {address}"),
                    KvmErrorIds.DeviceAlreadyAttached, ErrorCategory.ResourceExists, text));
                continue;
            }
            PciPassthroughReadiness readiness;
            try { readiness = PciPassthroughCheck.Check(HostDevices, address); }
            catch (PciPassthroughException e)
            {
                Output.WriteError(new KvmError(e, KvmErrorIds.PciDeviceUnusable, ErrorCategory.InvalidArgument, text));
                continue;
            }
            foreach (var warning in readiness.Warnings) Output.WriteWarning(warning);
            add.Add(address);
        }
        if (add.Count == 0 || !Output.ShouldProcess(name, $"Pass through PCI device(s) {string.Join(", ", add)}"))
            return;
        var result = Manager.Update(name, d => d with { PciPassthrough = new ValueList<PciAddress>(d.PciPassthrough.Concat(add)) });
        ReportChange(result, Switch(RestartIfNeeded));
        if (Switch(PassThru))
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
