using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.HostDevices;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Add-KvmPciPassthrough: gives the VM host PCI functions (kernel VFIO, -Address) or devices served over vfio-user
/// (-VfioUserSocket); both take effect at the VM's next start.
/// </summary>
[Cmdlet(VerbsCommon.Add, "KvmPciPassthrough", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class AddKvmPciPassthroughCommand : KvmVmCmdletBase
{
    /// <summary>Host PCI addresses, DDDD:BB:DD.F (as Get-KvmHostPciDevice shows them).</summary>
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [Alias("PciAddress", "HostDevice")]
    public string[] Address { get; set; } = Array.Empty<string>();

    /// <summary>vfio-user servers' Unix sockets: each becomes a PCI device of the VM, served by that process.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[] VfioUserSocket { get; set; } = Array.Empty<string>();

    [Parameter]
    public SwitchParameter RestartIfNeeded { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        if (Address.Length == 0 && VfioUserSocket.Length == 0)
            throw KvmParameterException.Combination("Address", null, "give -Address (host PCI functions) or -VfioUserSocket (vfio-user servers), or both.");
        var definition = Manager.GetDefinition(name);
        AddVfioUser(name, definition);
        if (Address.Length == 0)
        {
            if (PassThru.IsPresent)
                Output.WriteObject(new KvmVm(Manager.Get(name)));
            return;
        }
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

    private void AddVfioUser(string name, VmDefinition definition)
    {
        var add = new List<string>();
        foreach (var text in VfioUserSocket)
        {
            string socket = ResolvePath(text);
            if (definition.VfioUserDevices.Contains(socket) || add.Contains(socket))
                Output.WriteError(ErrorFor(new VmDeviceAlreadyAttachedException(name, "VfioUserDevices", socket, $"VM '{name}' already has vfio-user device '{socket}'"), text));
            else
                add.Add(socket);
        }
        if (add.Count == 0 || !Output.ShouldProcess(name, $"Add {DisplayText.Count(add.Count, "vfio-user device")} {string.Join(", ", add.Select(s => $"'{s}'"))}"))
            return;
        ReportChange(Manager.AddVfioUserDevices(name, add), RestartIfNeeded.IsPresent);
    }
}
