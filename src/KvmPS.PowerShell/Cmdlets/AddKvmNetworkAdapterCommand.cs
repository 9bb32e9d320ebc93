using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Add-KvmNetworkAdapter: adds a virtio-net adapter on a bridge or an existing tap device.</summary>
[Cmdlet(VerbsCommon.Add, "KvmNetworkAdapter", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class AddKvmNetworkAdapterCommand : KvmVmCmdletBase
{
    /// <summary>Host bridge to connect to (the VMM creates a tap on it).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [Alias("SwitchName")]
    public string? BridgeName { get; set; }

    /// <summary>Existing host tap device to use.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? TapName { get; set; }

    /// <summary>The adapter's MAC address; by default a stable 52:54:00:xx:xx:xx derived from the VM name.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? MacAddress { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Begin()
    {
        if ((BridgeName is null) == (TapName is null))
            throw new ArgumentException("Give exactly one of -BridgeName and -TapName.");
    }

    /// <summary>The next free generated MAC for <paramref name="definition"/>.</summary>
    internal static MacAddress GenerateMac(VmDefinition definition)
    {
        var used = definition.NetworkAdapters.Select(a => a.MacAddress).ToHashSet();
        for (var i = definition.NetworkAdapters.Count; ; i++)
        {
            var mac = Management.Definitions.MacAddress.GenerateLocallyAdministered($"{definition.Name}/{i}");
            if (!used.Contains(mac))
                return mac;
        }
    }

    protected override void ProcessVm(string name)
    {
        var explicitMac = MacAddress is null ? (MacAddress?)null : Management.Definitions.MacAddress.Parse(MacAddress);
        if (!Output.ShouldProcess(name, $"Add a network adapter on {(BridgeName is not null ? "bridge '" + BridgeName : "tap '" + TapName)}'"))
            return;
        var result = Manager.Update(name, d =>
        {
            var adapter = new NetworkAdapterDefinition(TapName, BridgeName, explicitMac ?? GenerateMac(d));
            return d with { NetworkAdapters = new ValueList<NetworkAdapterDefinition>(d.NetworkAdapters.Append(adapter)) };
        });
        ReportChange(result, restartIfNeeded: false);
        if (Switch(PassThru))
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
