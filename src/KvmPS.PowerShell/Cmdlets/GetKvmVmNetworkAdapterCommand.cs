using System.Management.Automation;
using KvmPS.Management.Networks;
using KvmPS.PowerShell.Internal;

namespace KvmPS.Commands;

/// <summary>
/// Get-KvmVmNetworkAdapter: each network adapter of the VMs with its network (or bridge, or tap), MAC address and the
/// IPv4 addresses the network's DHCP server leased to that MAC (Hyper-V's Get-VMNetworkAdapter and IPAddresses).
/// </summary>
[Cmdlet(VerbsCommon.Get, "KvmVmNetworkAdapter", DefaultParameterSetName = NameSet)]
[OutputType(typeof(VmNetworkAdapterAddresses))]
public sealed class GetKvmVmNetworkAdapterCommand : KvmRemoteVmCmdletBase
{
    private NetworkManager? _networks;

    protected override void ProcessVm(string name)
    {
        _networks ??= new NetworkManager(Manager.Store);
        foreach (var adapter in _networks.Addresses(name))
            Output.WriteObject(adapter);
    }

    /// <summary>-HostName: kvmps vm addresses there (the same management call); KvmPS.RemoteVmNetworkAdapter objects.</summary>
    internal override void ProcessRemoteVm(RemoteHost remote, string name)
    {
        foreach (var adapter in remote.Objects(["vm", "addresses", "--json", "--", name], RemoteObject.NetworkAdapter))
            Output.WriteObject(adapter);
    }
}
