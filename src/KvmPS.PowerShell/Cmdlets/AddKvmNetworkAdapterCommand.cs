using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Networks;
using KvmPS.PowerShell.Completers;
using KvmPS.PowerShell;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Add-KvmNetworkAdapter: adds a virtio-net adapter on a KvmPS network, a bridge or an existing tap device (hot-plugged
/// into a running VM), or an SR-IOV virtual function of a host NIC (-SriovVf; passed through at the next start with
/// its MAC and -VlanId set on the physical function).
/// </summary>
[Cmdlet(VerbsCommon.Add, "KvmNetworkAdapter", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(KvmVm))]
public sealed class AddKvmNetworkAdapterCommand : KvmRemoteVmCmdletBase
{
    /// <summary>Host bridge to connect to (the VMM creates a tap on it).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [Alias("SwitchName")]
    public string? BridgeName { get; set; }

    /// <summary>A KvmPS network (New-KvmNetwork); management makes the adapter's tap on the network's bridge.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(NetworkNameCompleter))]
    [Alias("NetworkName")]
    public string? Network { get; set; }

    /// <summary>Existing host tap device to use.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? TapName { get; set; }

    /// <summary>An SR-IOV virtual function (DDDD:BB:DD.F, as Get-KvmHostPciDevice lists VFs) given to the VM as its adapter.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [Alias("VirtualFunction")]
    public string? SriovVf { get; set; }

    /// <summary>The 802.1Q VLAN the VF's traffic is tagged with by the NIC (1-4094); -SriovVf only.</summary>
    [Parameter]
    [ValidateRange(1, 4094)]
    public int? VlanId { get; set; }

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
        var given = new (string Name, string? Value)[] { (nameof(Network), Network), (nameof(BridgeName), BridgeName), (nameof(TapName), TapName), (nameof(SriovVf), SriovVf) }
            .Where(p => p.Value is not null).ToList();
        if (given.Count != 1)
            throw KvmParameterException.Combination(given.Count == 0 ? nameof(Network) : given[1].Name, given.Count == 0 ? null : given[1].Value, "Give exactly one of -Network, -BridgeName, -TapName and -SriovVf.");
        if (VlanId is { } vlan && SriovVf is null)
            throw KvmParameterException.Combination(nameof(VlanId), vlan.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "-VlanId applies to an SR-IOV adapter (-SriovVf) only: the NIC tags the VF's traffic; a tap, bridge or network adapter is untagged.");
        LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
    }

    protected override void ProcessVm(string name)
    {
        var mac = MacAddress is null ? (MacAddress?)null : KvmParameterException.Parse(nameof(MacAddress), MacAddress, Management.Definitions.MacAddress.Parse);
        var scope = LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent);
        if (SriovVf is not null)
        {
            AddVirtualFunction(name, mac, scope);
            return;
        }
        var action = Network is not null ? $"Add a network adapter on network '{Network}'"
            : BridgeName is not null ? $"Add a network adapter on bridge '{BridgeName}'" : $"Add a network adapter on tap '{TapName}'";
        if (!Output.ShouldProcess(name, action + LiveChangeParameters.Describe(scope)))
            return;
        ReportChange(Network is null ? Manager.AddNetworkAdapter(name, TapName, BridgeName, mac, scope) : AddOnNetwork(name, Network, mac, scope), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    /// <summary>
    /// An SR-IOV VF adapter: the VF is checked as Add-KvmPciPassthrough checks a device (it exists, its IOMMU group can
    /// be given away) and must be a VF; the change takes effect at the VM's next start (passthrough does not hot-plug).
    /// </summary>
    private void AddVirtualFunction(string name, MacAddress? mac, Management.Lifecycle.ChangeScope scope)
    {
        var vf = KvmParameterException.Parse(nameof(SriovVf), SriovVf!, PciAddress.Parse);
        Management.HostDevices.PciPassthroughReadiness readiness;
        try { readiness = Management.HostDevices.PciPassthroughCheck.CheckVirtualFunction(new Management.HostDevices.PciHostDevices(), vf); }
        catch (Management.HostDevices.PciPassthroughException e)
        {
            Output.WriteError(new KvmError(e, KvmErrorIds.PciDeviceUnusable, System.Management.Automation.ErrorCategory.InvalidArgument, SriovVf));
            return;
        }
        foreach (var warning in readiness.Warnings)
            Output.WriteWarning(warning);
        var action = $"Add a network adapter on SR-IOV VF {vf}" + (VlanId is { } vlan ? $" (VLAN {vlan})" : "");
        if (!Output.ShouldProcess(name, action + LiveChangeParameters.Describe(scope)))
            return;
        ReportChange(Manager.AddNetworkAdapter(name, null, null, mac, scope, null, vf, VlanId), restartIfNeeded: false);
        if (PassThru.IsPresent)
            Output.WriteObject(new KvmVm(Manager.Get(name)));
    }

    /// <summary>
    /// An adapter on a KvmPS network: the network must exist (a typo fails here, not at the VM's next start); the MAC
    /// rule is the one <see cref="Management.Lifecycle.VmManager.AddNetworkAdapter"/> uses for bridges and taps.
    /// </summary>
    private Management.Lifecycle.ChangeResult AddOnNetwork(string vmName, string network, MacAddress? mac, Management.Lifecycle.ChangeScope scope)
    {
        _networks ??= new NetworkManager(Manager.Store);
        var name = _networks.Get(network).Name;
        return Manager.Update(vmName, d =>
        {
            var address = mac ?? NetworkAdapterDefinition.GenerateMac(d.Name, d.NetworkAdapters.Count, d.NetworkAdapters.Select(a => a.MacAddress));
            var adapter = new NetworkAdapterDefinition(null, null, address, name);
            return d with { NetworkAdapters = new ValueList<NetworkAdapterDefinition>(d.NetworkAdapters.Append(adapter)) };
        }, scope);
    }

    private NetworkManager? _networks;

    /// <summary>-HostName: kvmps vm attach-nic there (-Network, -BridgeName, -TapName and -SriovVf are that host's).</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        var options = new List<string>(LiveChangeParameters.Arguments(Live.IsPresent, Config.IsPresent));
        var (option, value, what) = Network is not null ? ("--network", Network, "network") : BridgeName is not null ? ("--bridge", BridgeName, "bridge")
            : SriovVf is not null ? ("--sriov-vf", SriovVf, "SR-IOV VF") : ("--tap", TapName!, "tap");
        options.AddRange([option, value]);
        if (VlanId is { } vlan)
            options.AddRange(["--vlan", vlan.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        if (MacAddress is not null)
            options.AddRange(["--mac", KvmParameterException.Parse(nameof(MacAddress), MacAddress, Management.Definitions.MacAddress.Parse).ToString()]);
        RemoteChange(remote, name, $"Add a network adapter on {what} '{value}'" + LiveChangeParameters.Describe(LiveChangeParameters.Scope(Live.IsPresent, Config.IsPresent)),
            "attach-nic", options, [], PassThru.IsPresent);
    }
}
