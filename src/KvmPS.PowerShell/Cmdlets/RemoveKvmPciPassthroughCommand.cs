using KvmPS.PowerShell.Completers;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Remove-KvmPciPassthrough: takes passed-through PCI functions (-Address) or vfio-user devices (-VfioUserSocket) away from the VM.</summary>
[Cmdlet(VerbsCommon.Remove, "KvmPciPassthrough", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class RemoveKvmPciPassthroughCommand : KvmVmCmdletBase
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
        if (Address.Length == 0 && VfioUserSocket.Length == 0)
            throw KvmParameterException.Combination("Address", null, "give -Address (host PCI functions) or -VfioUserSocket (vfio-user servers), or both.");
        var definition = Manager.GetDefinition(name);
        RemoveVfioUser(name, definition);
        if (Address.Length == 0)
        {
            if (PassThru.IsPresent)
                Output.WriteObject(new KvmVm(Manager.Get(name)));
            return;
        }
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

    private void RemoveVfioUser(string name, VmDefinition definition)
    {
        var remove = new List<string>();
        foreach (var text in VfioUserSocket)
        {
            string socket = ResolvePath(text);
            if (definition.VfioUserDevices.Contains(socket))
                remove.Add(socket);
            else
                Output.WriteError(ErrorFor(new VmDeviceNotFoundException(name, "VfioUserDevices", text, $"VM '{name}' has no vfio-user device '{socket}'"), text));
        }
        if (remove.Count == 0 || !Output.ShouldProcess(name, $"Remove {DisplayText.Count(remove.Count, "vfio-user device")} {string.Join(", ", remove.Select(s => $"'{s}'"))}"))
            return;
        ReportChange(Manager.RemoveVfioUserDevices(name, remove), restartIfNeeded: false);
    }
}
