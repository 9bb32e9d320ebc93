using System.Management.Automation;
using KvmPS.Management.Definitions;
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
    public string[] MacAddress { get; set; } = Array.Empty<string>();

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessVm(string name)
    {
        var definition = Manager.Store.Get(name);
        var remove = new HashSet<MacAddress>();
        foreach (var text in MacAddress)
        {
            var mac = Management.Definitions.MacAddress.Parse(text);
            if (definition.NetworkAdapters.Any(a => a.MacAddress == mac))
                remove.Add(mac);
            else
                Output.WriteError(new KvmError(new ItemNotFoundException($"VM '{name}' has no network adapter with MAC address {mac}"),
                    KvmErrorIds.DeviceNotFound, ErrorCategory.ObjectNotFound, text));
        }
        if (remove.Count == 0 || !Output.ShouldProcess(name, $"Remove network adapter(s) {string.Join(", ", remove)}"))
            return;
        var result = Manager.Update(name, d => d with
        {
            NetworkAdapters = new ValueList<NetworkAdapterDefinition>(d.NetworkAdapters.Where(a => !remove.Contains(a.MacAddress))),
        });
        ReportChange(result, restartIfNeeded: false);
        if (Switch(PassThru))
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
