using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Networks;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>
/// <c>kvmps net …</c>, <c>vm attach-nic --network</c> and <c>vm addresses</c> in-process over a temporary store. Nothing
/// here starts a network (that changes the host; Management.Tests/Networks does it in namespaces): create only reads
/// the host's routes and links to refuse collisions.
/// </summary>
public sealed class NetCliTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly string _root;
    private readonly VmManager _manager;
    private readonly string _bridge = "kvt" + Guid.NewGuid().ToString("N")[..8];

    public NetCliTests()
    {
        _root = Path.Combine(_dir.Path, "store");
        _manager = new VmManager(VmStore.Open(_root, allowedPaths: AllowedPaths.StoreOnly(_root)));
    }

    public void Dispose() => _dir.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_manager, "", args);

    [Fact]
    public void Create_list_show_set_and_remove_with_json()
    {
        var (code, output, err) = Run("net", "create", "lab", "--mode", "nat", "--bridge", _bridge, "--subnet", "10.231.77.0/24",
            "--dhcp-start", "10.231.77.100", "--dhcp-end", "10.231.77.150", "--leases", "52:54:00:00:00:09=10.231.77.9=web", "--autostart", "--json");
        Assert.True(code == ExitCodes.Ok, err);
        using (var created = JsonDocument.Parse(output))
        {
            var n = created.RootElement;
            Assert.Equal("Nat", n.GetProperty("mode").GetString());
            Assert.Equal("Inactive", n.GetProperty("state").GetString());
            Assert.Equal("10.231.77.1", n.GetProperty("gateway").GetString());
            Assert.Equal("10.231.77.100", n.GetProperty("dhcpRangeStart").GetString());
            Assert.True(n.GetProperty("autostart").GetBoolean());
            Assert.Equal("10.231.77.9", n.GetProperty("staticLeases")[0].GetProperty("address").GetString());
        }
        Assert.True(File.Exists(Path.Combine(_root, "networks", "lab.network.json")));

        (code, output, _) = Run("net", "list");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Matches(@"lab\s+Nat\s+Inactive\s+yes\s+" + _bridge + @"\s+10\.231\.77\.0/24", output);

        (code, output, _) = Run("net", "set", "lab", "--no-autostart", "--domain", "lab.test");
        Assert.Equal(ExitCodes.Ok, code);
        (code, output, _) = Run("net", "show", "lab");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("Autostart:  no", output);
        Assert.Contains("Domain:     lab.test", output);
        Assert.Contains("DHCP range: 10.231.77.100 - 10.231.77.150", output);

        (code, output, _) = Run("net", "remove", "lab");
        Assert.Equal(ExitCodes.Ok, code);
        (code, output, _) = Run("net", "list", "--json");
        Assert.Equal("[]", output.Trim());
    }

    [Fact]
    public void Bad_settings_name_the_setting_and_store_nothing()
    {
        var (code, _, err) = Run("net", "create", "lab", "--mode", "nat", "--bridge", _bridge, "--subnet", "10.231.77.0/24", "--dhcp-start", "10.231.78.10");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("DhcpRangeStart '10.231.78.10' is outside the subnet 10.231.77.0/24", err);

        (code, _, err) = Run("net", "create", "lab", "--mode", "nat", "--bridge", "averyveryverylongbr", "--subnet", "10.231.77.0/24");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("BridgeName 'averyveryverylongbr'", err);

        (code, _, err) = Run("net", "create", "lab", "--mode", "nat", "--bridge", _bridge, "--subnet", "10.231.77.0/7");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("Subnet '10.231.77.0/7'", err);
        Assert.False(Directory.Exists(Path.Combine(_root, "networks")) && Directory.EnumerateFiles(Path.Combine(_root, "networks")).Any());

        Assert.Equal(ExitCodes.Usage, Run("net", "create", "lab", "--subnet", "10.231.77.0/24").Code); // no --mode
        Assert.Equal(ExitCodes.Usage, Run("net", "create", "lab", "--mode", "switch").Code);
        Assert.Equal(ExitCodes.Usage, Run("net", "create", "lab", "--mode", "nat", "--gateway", "10.1").Code);
        Assert.Equal(ExitCodes.Usage, Run("net", "frobnicate").Code);
        Assert.Equal(ExitCodes.OperationFailed, Run("net", "show", "nothere").Code);
    }

    [Fact]
    public void Nic_on_a_network_blocks_remove_and_vm_addresses_lists_it()
    {
        Assert.Equal(ExitCodes.Ok, Run("net", "create", "lab", "--mode", "isolated", "--bridge", _bridge, "--subnet", "10.231.77.0/24").Code);
        _manager.New(new VmSettingsChange().ToNewDefinition("web1"));

        var (code, _, err) = Run("vm", "attach-nic", "web1", "--network", "nothere");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("Network 'nothere' does not exist", err);
        Assert.Equal(ExitCodes.Usage, Run("vm", "attach-nic", "web1", "--network", "lab", "--bridge", "br0").Code);

        (code, _, err) = Run("vm", "attach-nic", "web1", "--network", "lab", "--mac", "52:54:00:00:00:42");
        Assert.True(code == ExitCodes.Ok, err);
        var stored = _manager.GetDefinition("web1");
        Assert.Equal("lab", Assert.Single(stored.NetworkAdapters).NetworkName);
        // vm.json keeps it under "network".
        Assert.Contains("\"network\": \"lab\"", File.ReadAllText(Path.Combine(_root, "vms", "web1", "vm.json")));

        (code, _, err) = Run("net", "remove", "lab");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("'web1'", err);

        // A lease dnsmasq would have written for the NIC's MAC.
        var leases = NetworkRegistry.LeaseFilePath(_root, "lab");
        Directory.CreateDirectory(Path.GetDirectoryName(leases)!);
        File.WriteAllText(leases, "1893456000 52:54:00:00:00:42 10.231.77.57 web1 01:52:54:00:00:00:42\n1893456000 52:54:00:00:00:43 10.231.77.58 other *\n");
        string output;
        (code, output, _) = Run("vm", "addresses", "web1", "--json");
        Assert.Equal(ExitCodes.Ok, code);
        using (var json = JsonDocument.Parse(output))
        {
            var nic = Assert.Single(json.RootElement.EnumerateArray());
            Assert.Equal("lab", nic.GetProperty("network").GetString());
            Assert.Equal(_bridge, nic.GetProperty("bridge").GetString());
            Assert.Equal(["10.231.77.57"], nic.GetProperty("ipAddresses").EnumerateArray().Select(a => a.GetString()));
        }
        (code, output, _) = Run("vm", "addresses", "web1");
        Assert.Matches(@"0\s+52:54:00:00:00:42\s+lab\s+" + _bridge + @"\s+-\s+10\.231\.77\.57", output);
        Assert.Equal(ExitCodes.VmNotFound, Run("vm", "addresses", "nothere").Code);

        // Starting the VM is refused while its network is not started, naming the network.
        var start = Assert.ThrowsAny<Exception>(() => _manager.Start("web1"));
        Assert.Contains("network 'lab' is not active", start.Message);
    }
}
