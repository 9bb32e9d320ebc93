using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.HostDevices;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Add-KvmPciPassthrough: gives the VM host PCI functions (kernel VFIO, -Address) or devices served over vfio-user
/// (-VfioUserSocket); a running VM gets them at once (hot-plug), else at its next start.
/// </summary>
[Cmdlet(VerbsCommon.Add, "KvmPciPassthrough", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm), typeof(KvmRemoteVm))]
public sealed class AddKvmPciPassthroughCommand : KvmPassthroughCmdletBase
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
        RequireDevices(Address, VfioUserSocket);
        var definition = Manager.GetDefinition(name);
        AddVfioUser(name, definition);
        if (Address.Length == 0)
        {
            if (PassThru.IsPresent)
                Output.WriteObject(new KvmVm(Manager.Get(name)));
            return;
        }
        var host = new PciHostDevices();
        var add = Pick(name, Address, t => KvmParameterException.Parse(nameof(Address), t, PciAddress.Parse), definition.PciPassthrough, attach: true,
            "PciPassthrough", PciLabel, (text, address) =>
            {
                PciPassthroughReadiness readiness;
                try { readiness = PciPassthroughCheck.Check(host, address); }
                catch (PciPassthroughException e)
                {
                    Output.WriteError(new KvmError(e, KvmErrorIds.PciDeviceUnusable, ErrorCategory.InvalidArgument, text));
                    return false;
                }
                foreach (var warning in readiness.Warnings) Output.WriteWarning(warning);
                return true;
            });
        if (add.Count == 0 || !Output.ShouldProcess(name, $"Pass through PCI {DisplayText.Count(add.Count, "device")} {string.Join(", ", add)}"))
            return;
        ReportChange(Manager.AddPciPassthrough(name, add), RestartIfNeeded.IsPresent);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    private void AddVfioUser(string name, VmDefinition definition)
    {
        var add = Pick(name, VfioUserSocket, ResolvePath, definition.VfioUserDevices, attach: true, "VfioUserDevices", VfioUserLabel);
        if (add.Count == 0 || !Output.ShouldProcess(name, $"Add {DisplayText.Count(add.Count, "vfio-user device")} {string.Join(", ", add.Select(s => $"'{s}'"))}"))
            return;
        ReportChange(Manager.AddVfioUserDevices(name, add), RestartIfNeeded.IsPresent);
    }

    /// <summary>-HostName: kvmps vm attach-pci there per device; addresses are that host's functions (checked there), sockets its paths.</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        RequireDevices(Address, VfioUserSocket);
        RemoteEach(remote, name, "attach-pci", "Pass through", Address, VfioUserSocket, PassThru.IsPresent, RestartIfNeeded.IsPresent);
    }
}
