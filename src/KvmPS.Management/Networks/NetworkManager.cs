using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;

namespace KvmPS.Management.Networks;

/// <summary>
/// Virtual networks: the one API the cmdlets, the CLI, the reconciler and <c>kvmps autostart</c> call (docs/networks.md).
/// Stateless apart from the store (network files in <c>&lt;store&gt;/networks/</c>, see <see cref="NetworkRegistry"/>)
/// and the host itself: a network's <see cref="NetworkState"/> is read from the host (bridge, address, nftables table,
/// dnsmasq) on every call, so hand-made damage shows as drift. Changes run under the store lock. Errors are typed
/// (<see cref="NetworkException"/> and subclasses) and name the network, setting or failing command; a refused or
/// failed operation leaves nothing half-made.
/// </summary>
public sealed partial class NetworkManager
{
    private readonly HostCommands _host;

    public NetworkManager(VmStore store) : this(store, new HostCommands())
    {
    }

    /// <summary>Tests: every host command runs under <c>ip netns exec</c> in <paramref name="host"/>'s namespace.</summary>
    internal NetworkManager(VmStore store, HostCommands host)
    {
        Store = store ?? throw new ArgumentNullException(nameof(store));
        _host = host;
    }

    public VmStore Store { get; }

    public IReadOnlyList<NetworkInfo> List() => NetworkRegistry.List(Store.Root).Select(ToInfo).ToList();

    public NetworkInfo Get(string name) => ToInfo(NetworkRegistry.Get(Store.Root, NetworkValidation.ValidateName(name)));

    public NetworkInfo? TryGet(string name) =>
        NetworkRegistry.TryGet(Store.Root, NetworkValidation.ValidateName(name)) is { } network ? ToInfo(network) : null;

    /// <summary>Checks and stores a new network (defaults filled in); it is not started (<see cref="Start"/> does).</summary>
    public NetworkInfo Create(NetworkDefinition definition)
    {
        var network = NetworkValidation.Normalize(definition);
        using (Store.Lock())
        {
            if (NetworkRegistry.TryGet(Store.Root, network.Name) is not null)
                throw new NetworkAlreadyExistsException(network.Name);
            CheckAgainstHost(network, previous: null);
            NetworkRegistry.Write(Store.Root, network);
        }
        return Get(network.Name);
    }

    /// <summary>
    /// Replaces the settings of an existing network. A started network is stopped with its old settings and started with
    /// the new ones; if that start fails, the old settings are put back and started again, and the error is thrown.
    /// </summary>
    public NetworkInfo Set(NetworkDefinition definition)
    {
        var network = NetworkValidation.Normalize(definition);
        using (Store.Lock())
        {
            var old = NetworkRegistry.Get(Store.Root, network.Name);
            CheckAgainstHost(network, old);
            // Only Autostart changed (or nothing): the host pieces stay as they are, dnsmasq is not restarted.
            var sameOnHost = NetworkJson.Serialize(old with { Autostart = false }).AsSpan().SequenceEqual(NetworkJson.Serialize(network with { Autostart = false }));
            var started = IsStarted(old) && !sameOnHost;
            if (started && network.BridgeName != old.BridgeName && RunningVmsUsing(old.Name) is { Count: > 0 } running)
                throw new NetworkInUseException(network.Name, running,
                    $"Network '{network.Name}': BridgeName cannot change while running VMs use it ({Names(running)}); stop them first");
            if (started)
                StopHost(old);
            NetworkRegistry.Write(Store.Root, network);
            if (started)
            {
                try
                {
                    StartHost(network);
                }
                catch
                {
                    NetworkRegistry.Write(Store.Root, old);
                    try
                    {
                        StartHost(old);
                    }
                    catch (NetworkException)
                    {
                        // The new settings' error is the one to report; the old network's state shows in Get.
                    }
                    throw;
                }
            }
        }
        return Get(network.Name);
    }

    /// <summary>Stops the network and forgets it (its runtime folder, lease file included, goes too). Refused while VM definitions use it.</summary>
    public void Remove(string name)
    {
        NetworkValidation.ValidateName(name);
        using (Store.Lock())
        {
            var network = NetworkRegistry.Get(Store.Root, name);
            var users = VmsUsingNetwork(name);
            if (users.Count > 0)
                throw new NetworkInUseException(name, users,
                    $"Network '{name}' is in use: {(users.Count == 1 ? "VM" : "VMs")} {Names(users)} {(users.Count == 1 ? "has a network adapter" : "have network adapters")} on it. Remove those adapters (or the VMs) first.");
            StopHost(network);
            NetworkRegistry.Delete(Store.Root, name);
        }
    }

    /// <summary>Brings every piece up; idempotent, and on a Degraded network it re-creates exactly what is missing or wrong.</summary>
    public NetworkInfo Start(string name)
    {
        NetworkValidation.ValidateName(name);
        using (Store.Lock())
        {
            var network = NetworkRegistry.Get(Store.Root, name);
            CheckAgainstHost(network, network);
            StartHost(network);
        }
        return Get(name);
    }

    /// <summary>Removes what <see cref="Start"/> made (bridge, table, dnsmasq); idempotent. Refused while running VMs use it.</summary>
    public NetworkInfo Stop(string name)
    {
        NetworkValidation.ValidateName(name);
        using (Store.Lock())
        {
            var network = NetworkRegistry.Get(Store.Root, name);
            var running = RunningVmsUsing(name);
            if (running.Count > 0)
                throw new NetworkInUseException(name, running,
                    $"Network '{name}' cannot be stopped: running {(running.Count == 1 ? "VM" : "VMs")} {Names(running)} {(running.Count == 1 ? "uses" : "use")} it. Stop them first.");
            StopHost(network);
        }
        return Get(name);
    }

    /// <summary>
    /// What <c>kvmps autostart</c> does before starting VMs: starts (or repairs) every network with autostart. Never
    /// throws for one network: each gets a result (null error = it is up; WasActive: it was already up without drift).
    /// </summary>
    public IReadOnlyList<(string Network, bool WasActive, Exception? Error)> AutostartNetworks()
    {
        IReadOnlyList<NetworkDefinition> networks;
        try
        {
            networks = NetworkRegistry.List(Store.Root);
        }
        catch (Exception e) when (e is VmStoreException or IOException or UnauthorizedAccessException)
        {
            return [("*", false, e)];
        }
        var results = new List<(string, bool, Exception?)>();
        foreach (var network in networks.Where(n => n.Autostart))
        {
            try
            {
                var before = Get(network.Name);
                bool wasActive = before.State == NetworkState.Active && before.Problems.Count == 0; // else Start repairs it
                if (!wasActive) Start(network.Name);
                results.Add((network.Name, wasActive, null));
            }
            catch (Exception e) when (e is NetworkException or VmStoreException or IOException or UnauthorizedAccessException)
            {
                results.Add((network.Name, false, e));
            }
        }
        return results;
    }

    /// <summary>The leases dnsmasq recorded in the network's lease file (empty for a Bridge network or before any lease).</summary>
    public IReadOnlyList<NetworkLease> Leases(string name)
    {
        var network = NetworkRegistry.Get(Store.Root, NetworkValidation.ValidateName(name));
        return network.Mode == NetworkMode.Bridge ? [] : DnsmasqLeaseFile.Read(name, NetworkRegistry.LeaseFilePath(Store.Root, name));
    }

    /// <summary>Each network adapter of the VM, where it is attached, and the IPv4 addresses its MAC holds in its network's lease file.</summary>
    public IReadOnlyList<VmNetworkAdapterAddresses> Addresses(string vmName)
    {
        var definition = Store.Get(vmName);
        var result = new List<VmNetworkAdapterAddresses>();
        for (var i = 0; i < definition.NetworkAdapters.Count; i++)
        {
            var nic = definition.NetworkAdapters[i];
            IReadOnlyList<System.Net.IPAddress> addresses = [];
            string? bridge = nic.BridgeName;
            if (nic.NetworkName is { } networkName && NetworkRegistry.TryGet(Store.Root, networkName) is { } network)
            {
                bridge = network.BridgeName;
                if (network.Mode != NetworkMode.Bridge)
                    addresses = DnsmasqLeaseFile.Read(networkName, NetworkRegistry.LeaseFilePath(Store.Root, networkName))
                        .Where(l => l.MacAddress == nic.MacAddress)
                        .Select(l => l.Address)
                        .Distinct()
                        .ToList();
            }
            result.Add(new VmNetworkAdapterAddresses(vmName, i, nic.MacAddress, nic.NetworkName, bridge, nic.TapName, addresses) { SriovVf = nic.SriovVf, VlanId = nic.VlanId });
        }
        return result;
    }

    /// <summary>VMs whose definitions have a network adapter on <paramref name="name"/>, by name.</summary>
    public IReadOnlyList<string> VmsUsingNetwork(string name)
    {
        var users = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var vm in Store.ListNames())
        {
            try
            {
                if (Store.TryGet(vm) is { } definition && definition.NetworkAdapters.Any(a => a.NetworkName == name))
                    users.Add(vm);
            }
            catch (VmStoreException)
            {
                // A corrupt definition cannot be read by anyone; it does not block the network.
            }
        }
        return users.ToList();
    }

    /// <summary>
    /// Refuses to start a VM whose adapter names a network that does not exist, is not started, or has no bridge: the
    /// VMM would fail later with a less useful error. Called by the VM start path.
    /// </summary>
    public void EnsureUsable(string vmName, string network)
    {
        var definition = NetworkRegistry.TryGet(Store.Root, network)
            ?? throw new NetworkNotFoundException(network, Store.Root);
        var info = ToInfo(definition);
        if (info.State == NetworkState.Inactive)
            throw new NetworkException(network, $"VM '{vmName}' cannot start: network '{network}' is not active (start it: Start-KvmNetwork / kvmps net start {network})");
        if (HostNetworkState.Link(_host, definition.BridgeName) is null)
            throw new NetworkException(network, $"VM '{vmName}' cannot start: the bridge '{definition.BridgeName}' of network '{network}' does not exist (kvmps net start {network} repairs it)");
    }

    private IReadOnlyList<string> RunningVmsUsing(string name)
    {
        var users = VmsUsingNetwork(name);
        if (users.Count == 0)
            return users;
        var manager = new VmManager(Store);
        return users.Where(vm =>
        {
            try
            {
                return manager.Get(vm).IsActive;
            }
            catch (Exception e) when (e is VmStoreException or VmNotFoundException)
            {
                return false;
            }
        }).ToList();
    }

    private static string Names(IEnumerable<string> names) => string.Join(", ", names.Select(n => $"'{n}'"));
}
