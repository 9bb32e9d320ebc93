using KvmPS.Management.Store;

namespace KvmPS.Management.Networks;

// Stand-in so lane net-front compiles against the contract (/work/wt/network-api.txt); net-core's real file replaces it.
public sealed class NetworkManager
{
    public NetworkManager(VmStore store) => throw new NotImplementedException();
    public VmStore Store => throw new NotImplementedException();
    public IReadOnlyList<NetworkInfo> List() => throw new NotImplementedException();
    public NetworkInfo Get(string name) => throw new NotImplementedException();
    public NetworkInfo? TryGet(string name) => throw new NotImplementedException();
    public NetworkInfo Create(NetworkDefinition definition) => throw new NotImplementedException();
    public NetworkInfo Set(NetworkDefinition definition) => throw new NotImplementedException();
    public void Remove(string name) => throw new NotImplementedException();
    public NetworkInfo Start(string name) => throw new NotImplementedException();
    public NetworkInfo Stop(string name) => throw new NotImplementedException();
    public IReadOnlyList<(string Network, Exception? Error)> AutostartNetworks() => throw new NotImplementedException();
    public IReadOnlyList<NetworkLease> Leases(string name) => throw new NotImplementedException();
    public IReadOnlyList<VmNetworkAdapterAddresses> Addresses(string vmName) => throw new NotImplementedException();
    public IReadOnlyList<string> VmsUsingNetwork(string name) => throw new NotImplementedException();
}
