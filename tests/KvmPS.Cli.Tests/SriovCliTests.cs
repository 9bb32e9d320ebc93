using System.Text.Json;
using KvmPS.Cli;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>
/// <c>kvmps vm attach-nic --sriov-vf</c> and a manifest's HostSriov through <c>kvmps plan|apply|test|get</c>, against a
/// fake sysfs tree (KVMPS_SYSFS_ROOT) of plain files: a PF with one VF, and a plain device.
/// </summary>
public sealed class SriovCliTests : IDisposable
{
    private const string Pf = "0000:03:00.0", Vf = "0000:04:00.0";
    private readonly TempDirectory _dir = new();
    private readonly string _root;
    private readonly VmManager _manager;

    public SriovCliTests()
    {
        _root = Path.Combine(_dir.Path, "sysfs");
        AddFunction(Pf, "ixgbe", 7);
        File.WriteAllText(Path.Combine(Device(Pf), "sriov_totalvfs"), "8\n");
        File.WriteAllText(Path.Combine(Device(Pf), "sriov_numvfs"), "1\n");
        Directory.CreateDirectory(Path.Combine(Device(Pf), "net", "enp3s0f0"));
        AddFunction(Vf, "ixgbevf", 100);
        File.CreateSymbolicLink(Path.Combine(Device(Vf), "physfn"), Device(Pf));
        File.CreateSymbolicLink(Path.Combine(Device(Pf), "virtfn0"), Device(Vf));
        var store = Path.Combine(_dir.Path, "store");
        _manager = new VmManager(VmStore.Open(store, allowedPaths: AllowedPaths.StoreOnly(store)), diskImageCreator: new StorageDiskImageCreator());
        _manager.New(TestDefinitions.Minimal("sv"));
    }

    public void Dispose() => _dir.Dispose();

    private string Device(string address) => Path.Combine(_root, "bus", "pci", "devices", address);

    private void AddFunction(string address, string driver, int group)
    {
        var directory = Device(address);
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "vendor"), "0x8086\n");
        File.WriteAllText(Path.Combine(directory, "device"), "0x10fb\n");
        File.WriteAllText(Path.Combine(directory, "class"), "0x020000\n");
        var driverDirectory = Path.Combine(_root, "bus", "pci", "drivers", driver);
        Directory.CreateDirectory(driverDirectory);
        File.CreateSymbolicLink(Path.Combine(directory, "driver"), driverDirectory);
        var groupDevices = Path.Combine(_root, "kernel", "iommu_groups", group.ToString(System.Globalization.CultureInfo.InvariantCulture), "devices");
        Directory.CreateDirectory(groupDevices);
        File.CreateSymbolicLink(Path.Combine(groupDevices, address), directory);
        File.CreateSymbolicLink(Path.Combine(directory, "iommu_group"), Path.GetDirectoryName(groupDevices)!);
    }

    private (int Code, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var app = new CliApp(new StringReader(""), output, error, () => _manager)
        {
            GetEnvironment = name => name == "KVMPS_SYSFS_ROOT" ? _root : null,
        };
        return (app.Run(args), output.ToString(), error.ToString());
    }

    [Fact]
    public void AttachNicTakesAVfWithAVlanAndRefusesWhatIsNoVf()
    {
        var (code, _, error) = Run("vm", "attach-nic", "sv", "--sriov-vf", Vf, "--vlan", "100", "--mac", "52:54:00:00:00:a1");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("bound to ixgbevf, not vfio-pci", error);
        var adapter = Assert.Single(_manager.Store.Get("sv").NetworkAdapters);
        Assert.Equal((PciAddress.Parse(Vf), 100, MacAddress.Parse("52:54:00:00:00:a1")), (adapter.SriovVf, adapter.VlanId, adapter.MacAddress));

        (code, var output, error) = Run("vm", "addresses", "sv", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        using (var json = JsonDocument.Parse(output))
        {
            Assert.Equal(Vf, json.RootElement[0].GetProperty("sriovVf").GetString());
            Assert.Equal(100, json.RootElement[0].GetProperty("vlanId").GetInt32());
        }

        (code, _, error) = Run("vm", "attach-nic", "sv", "--sriov-vf", Pf);
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("not an SR-IOV virtual function", error);
        (code, _, error) = Run("vm", "attach-nic", "sv", "--tap", "tap1", "--vlan", "5");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--vlan applies to an SR-IOV adapter (--sriov-vf) only", error);
        (code, _, error) = Run("vm", "attach-nic", "sv", "--sriov-vf", Vf, "--vlan", "4095");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("not a VLAN id (1-4094)", error);
        Assert.Single(_manager.Store.Get("sv").NetworkAdapters);
    }

    [Fact]
    public void PlanApplyTestAndGetCarryTheVfCount()
    {
        var manifest = Path.Combine(_dir.Path, "host.psd1");
        File.WriteAllText(manifest, $"@{{ HostSriov = @{{ '{Pf}' = 2 }} }}");

        var (code, output, error) = Run("plan", manifest);
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"Set the VF count of {Pf} (enp3s0f0) to 2 (now 1)", output);
        (code, _, _) = Run("test", manifest);
        Assert.Equal(ExitCodes.Drift, code);

        (code, _, error) = Run("apply", manifest);
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal("2", File.ReadAllText(Path.Combine(Device(Pf), "sriov_numvfs")).Trim());

        (code, _, error) = Run("test", manifest);
        Assert.True(code == ExitCodes.Ok, error);
        (code, output, error) = Run("get", manifest, "--json");
        Assert.True(code == ExitCodes.Ok, error);
        using var json = JsonDocument.Parse(output);
        var pf = json.RootElement.GetProperty("hostSriov")[0];
        Assert.Equal((Pf, 2, 2, true), (pf.GetProperty("physicalFunction").GetString(), pf.GetProperty("desiredVfCount").GetInt32(),
            pf.GetProperty("vfCount").GetInt32(), pf.GetProperty("inDesiredState").GetBoolean()));
    }
}
