using KvmPS.Management.Networks;

namespace KvmPS.Management.DesiredState;

/// <summary>
/// The few <see cref="NetworkManager"/> calls the reconciler and the exporter make, as an interface so their planning
/// and stepping are testable without a host (bridges, dnsmasq, nftables). <see cref="NetworkManagerOperations"/> is the real one.
/// </summary>
public interface INetworkOperations
{
    IReadOnlyList<NetworkInfo> List();
    NetworkInfo? TryGet(string name);
    NetworkInfo Create(NetworkDefinition definition);
    NetworkInfo Set(NetworkDefinition definition);
    NetworkInfo Start(string name);
    void Remove(string name);
}

/// <summary><see cref="INetworkOperations"/> over a <see cref="NetworkManager"/>, made on first use (reconciling a manifest without networks never needs one).</summary>
public sealed class NetworkManagerOperations(Func<NetworkManager> open) : INetworkOperations
{
    private NetworkManager? _manager;

    public NetworkManagerOperations(Store.VmStore store) : this(() => new NetworkManager(store))
    {
    }

    private NetworkManager Manager => _manager ??= open();

    public IReadOnlyList<NetworkInfo> List() => Manager.List();
    public NetworkInfo? TryGet(string name) => Manager.TryGet(name);
    public NetworkInfo Create(NetworkDefinition definition) => Manager.Create(definition);
    public NetworkInfo Set(NetworkDefinition definition) => Manager.Set(definition);
    public NetworkInfo Start(string name) => Manager.Start(name);
    public void Remove(string name) => Manager.Remove(name);
}
