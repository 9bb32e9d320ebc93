using KvmPS.Management.Store;

namespace KvmPS.Management.Networks;

/// <summary>
/// Where the store keeps networks: <c>&lt;store&gt;/networks/&lt;name&gt;.network.json</c> (0600, written atomically
/// under the store lock), and the host-side files of a started network in <c>&lt;store&gt;/networks/&lt;name&gt;/</c>
/// (dnsmasq's config, lease, pid and log files; the nftables script and what <c>nft list table</c> showed after it
/// was installed; the <c>started</c> marker). Reads take no lock (files only change by rename).
/// </summary>
public static class NetworkRegistry
{
    public const string DirectoryName = "networks";
    public const string FileSuffix = ".network.json";

    public static string NetworksDirectory(string storeRoot) => Path.Combine(storeRoot, DirectoryName);

    public static string DefinitionPath(string storeRoot, string name) =>
        Path.Combine(NetworksDirectory(storeRoot), NetworkValidation.ValidateName(name) + FileSuffix);

    /// <summary>The folder of a network's runtime files (<c>&lt;store&gt;/networks/&lt;name&gt;/</c>).</summary>
    public static string StateDirectory(string storeRoot, string name) => Path.Combine(NetworksDirectory(storeRoot), NetworkValidation.ValidateName(name));

    public static string LeaseFilePath(string storeRoot, string name) => Path.Combine(StateDirectory(storeRoot, name), "dnsmasq.leases");

    /// <summary>Every network, by name.</summary>
    public static IReadOnlyList<NetworkDefinition> List(string storeRoot)
    {
        var directory = NetworksDirectory(storeRoot);
        if (!Directory.Exists(directory))
            return [];
        return Directory.EnumerateFiles(directory, "*" + FileSuffix)
            .Select(f => Path.GetFileName(f)[..^FileSuffix.Length])
            .Where(NetworkValidation.IsValidName)
            .Order(StringComparer.Ordinal)
            .Select(n => TryGet(storeRoot, n))
            .OfType<NetworkDefinition>()
            .ToList();
    }

    public static NetworkDefinition? TryGet(string storeRoot, string name)
    {
        var file = DefinitionPath(storeRoot, name);
        byte[] json;
        try
        {
            json = File.ReadAllBytes(file);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        var network = NetworkJson.Deserialize(json, file);
        if (network.Name != name)
            throw new VmStoreCorruptException(file, $"it defines network '{network.Name}' but is stored as '{name}'");
        return network;
    }

    public static NetworkDefinition Get(string storeRoot, string name) =>
        TryGet(storeRoot, name) ?? throw new NetworkNotFoundException(name, storeRoot);

    /// <summary>The bridge a NIC attached to network <paramref name="name"/> is enslaved to (no host check).</summary>
    public static string BridgeFor(string storeRoot, string name) => Get(storeRoot, name).BridgeName;

    /// <summary>Writes (creates or replaces) a network file. Caller holds the store lock.</summary>
    internal static void Write(string storeRoot, NetworkDefinition network)
    {
        StoreConfinement.CreateDirectory(NetworksDirectory(storeRoot));
        DurableFile.WriteAtomically(DefinitionPath(storeRoot, network.Name), NetworkJson.Serialize(network));
    }

    /// <summary>Deletes a network file and its runtime folder. Caller holds the store lock.</summary>
    internal static void Delete(string storeRoot, string name)
    {
        File.Delete(DefinitionPath(storeRoot, name));
        var state = StateDirectory(storeRoot, name);
        if (Directory.Exists(state))
            Directory.Delete(state, recursive: true);
        DurableFile.FsyncDirectory(NetworksDirectory(storeRoot));
    }
}
