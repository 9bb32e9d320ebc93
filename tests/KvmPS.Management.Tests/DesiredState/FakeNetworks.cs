using KvmPS.Management.DesiredState;
using KvmPS.Management.Networks;

namespace KvmPS.Management.Tests.DesiredState;

/// <summary>
/// Networks in memory for reconciler tests: Create stores a network Inactive, Start makes it Active (or leaves it as
/// <see cref="StartLeaves"/> says), Set replaces the definition. Every call is recorded in order.
/// </summary>
internal sealed class FakeNetworks : INetworkOperations
{
    private readonly Dictionary<string, NetworkInfo> _networks = new(StringComparer.Ordinal);

    public List<string> Calls { get; } = [];

    /// <summary>What Start leaves a network as (default Active); tests of a failed repair set it to Degraded.</summary>
    public NetworkState StartLeaves { get; set; } = NetworkState.Active;

    public void Add(NetworkDefinition definition, NetworkState state = NetworkState.Active, IReadOnlyList<string>? problems = null, IReadOnlyList<string>? usedBy = null) =>
        _networks[definition.Name] = new NetworkInfo(definition, state, problems ?? [], state == NetworkState.Inactive ? null : 4242, usedBy ?? []);

    public NetworkInfo this[string name] => _networks[name];

    public IReadOnlyList<NetworkInfo> List() => _networks.Values.ToList();

    public NetworkInfo? TryGet(string name) => _networks.GetValueOrDefault(name);

    public NetworkInfo Create(NetworkDefinition definition)
    {
        Calls.Add("Create:" + definition.Name);
        if (_networks.ContainsKey(definition.Name))
            throw new InvalidOperationException($"network '{definition.Name}' exists");
        Add(definition, NetworkState.Inactive);
        return _networks[definition.Name];
    }

    public NetworkInfo Set(NetworkDefinition definition)
    {
        Calls.Add("Set:" + definition.Name);
        var current = _networks[definition.Name];
        return _networks[definition.Name] = current with { Definition = definition };
    }

    public NetworkInfo Start(string name)
    {
        Calls.Add("Start:" + name);
        var current = _networks[name];
        return _networks[name] = current with { State = StartLeaves, Problems = StartLeaves == NetworkState.Degraded ? ["dnsmasq is not running"] : [] };
    }

    public void Remove(string name)
    {
        Calls.Add("Remove:" + name);
        if (!_networks.Remove(name))
            throw new InvalidOperationException($"no network '{name}'");
    }
}
