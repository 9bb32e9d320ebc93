using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>Add-KvmNetworkAdapter: adds a virtio-net adapter on a bridge or an existing tap device (hot-plugged into a running VM).</summary>
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

    /// <summary>Change the running VM now (and store it); refused when the VM is not running or cannot take it live.</summary>
    [Parameter]
    public SwitchParameter Live { get; set; }

    /// <summary>Store the change for the next start only: a running VM keeps its devices until it is restarted.</summary>
    [Parameter]
    public SwitchParameter Config { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void Begin()
    {
        if ((BridgeName is null) == (TapName is null))
            throw KvmParameterException.Combination(BridgeName is null ? nameof(TapName) : nameof(BridgeName), BridgeName ?? TapName, "Give exactly one of -BridgeName and -TapName.");
        LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
    }

    protected override void ProcessVm(string name)
    {
        var mac = MacAddress is null ? (MacAddress?)null : KvmParameterException.Parse(nameof(MacAddress), MacAddress, Management.Definitions.MacAddress.Parse);
        var scope = LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
        var action = BridgeName is not null ? $"Add a network adapter on bridge '{BridgeName}'" : $"Add a network adapter on tap '{TapName}'";
        if (!Output.ShouldProcess(name, action + LiveChangeParameters.Describe(scope)))
            return;
        ReportChange(Manager.AddNetworkAdapter(name, TapName, BridgeName, mac, scope), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }
}
