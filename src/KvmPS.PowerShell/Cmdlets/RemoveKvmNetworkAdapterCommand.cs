using KvmPS.PowerShell.Completers;
using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Remove-KvmNetworkAdapter: removes network adapters, identified by MAC address.</summary>
[Cmdlet(VerbsCommon.Remove, "KvmNetworkAdapter", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class RemoveKvmNetworkAdapterCommand : KvmVmCmdletBase
{
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmDeviceCompleter))]
    public string[] MacAddress { get; set; } = Array.Empty<string>();

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        var definition = Manager.GetDefinition(name);
        var remove = new HashSet<MacAddress>();
        foreach (var text in MacAddress)
        {
            var mac = KvmParameterException.Parse(nameof(MacAddress), text, Management.Definitions.MacAddress.Parse);
            if (definition.NetworkAdapters.Any(a => a.MacAddress == mac))
                remove.Add(mac);
            else
                Output.WriteError(ErrorFor(new VmDeviceNotFoundException(name, "NetworkAdapters.MacAddress", text, $"VM '{name}' has no network adapter with MAC address {mac}"), text));
        }
        if (remove.Count == 0 || !Output.ShouldProcess(name, $"Remove network {DisplayText.Count(remove.Count, "adapter")} {string.Join(", ", remove)}"))
            return;
        ReportChange(Manager.RemoveNetworkAdapters(name, remove), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
