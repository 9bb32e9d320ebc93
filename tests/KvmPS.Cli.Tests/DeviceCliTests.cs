using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Cli.Tests;

/// <summary>
/// <c>kvmps vm attach-disk|detach-disk|attach-nic|detach-nic</c> on a running VM, against <see cref="FakeVmm"/> (the
/// engine's control server with a scripted VM); the same commands on the real VMM are in <see cref="DeviceCliVmmTests"/>.
/// </summary>
public sealed class DeviceCliTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly VmStore _store;
    private readonly VmManager _manager;
    private readonly FakeVmm _vmm;

    public DeviceCliTests()
    {
        _store = VmStore.Open(_root.Path);
        _manager = new VmManager(_store, diskImageCreator: new StorageDiskImageCreator(), options: new VmManagerOptions { QueryTimeout = TimeSpan.FromSeconds(5) });
        var definition = TestDefinitions.Minimal("cd");
        _manager.New(definition);
        _vmm = new FakeVmm(_store.SocketPath("cd"), VmmConfigBuilder.BuildConfiguration(definition, "/s", "/l").Devices);
    }

    public void Dispose()
    {
        _vmm.Dispose();
        _root.Dispose();
    }

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_manager, "", args);

    private IEnumerable<DeviceDescription> Of(string type) => _vmm.Devices.Where(d => d.Type == type);

    [Fact]
    public void Attach_disk_creates_and_hot_plugs_then_detach_disk_releases_it_with_the_timeout_given()
    {
        var (code, output, error) = Run("vm", "attach-disk", "cd", "data.qcow2", "--size", "1M");
        Assert.True(code == 0, error);
        Assert.Contains("(applied to the running VM and stored)", output);
        var disk = Assert.Single(Of("block"));
        Assert.Equal(_store.ResolveDiskPath("cd", "data.qcow2"), disk.Options!["path"].GetString());
        Assert.Equal("qcow2", disk.Options["format"].GetString());
        Assert.Equal(DiskFormat.Qcow2, Assert.Single(_store.Get("cd").Disks).Format);

        (code, output, error) = Run("vm", "detach-disk", "cd", "data.qcow2", "--timeout=12", "--json");
        Assert.True(code == 0, error);
        using (var json = JsonDocument.Parse(output))
            Assert.Equal("AppliedLive", json.RootElement.GetProperty("changes")[0].GetProperty("application").GetString());
        Assert.Equal(disk.Pci, _vmm.Requests.OfType<DeviceRemoveRequest>().Single().Pci);
        Assert.Empty(Of("block"));
        Assert.Empty(_store.Get("cd").Disks);
    }

    [Fact]
    public void Attach_disk_with_pool_creates_the_volume_there_and_stores_the_pool_reference()
    {
        var (code, output, error) = Run("vm", "attach-disk", "cd", "pooled.qcow2", "--pool", "default", "--size", "1M");
        Assert.True(code == 0, output + error);
        var volume = new KvmPS.Management.Pools.StoragePoolManager(_store).VolumePath("default", "pooled.qcow2");
        Assert.True(File.Exists(volume), volume);
        Assert.Equal(volume, Assert.Single(Of("block")).Options!["path"].GetString());
        Assert.Equal("pool://default/pooled.qcow2", Assert.Single(_store.Get("cd").Disks).Path);

        // A pool that does not exist, and a volume name that is a path: refused naming them, nothing attached.
        (code, _, error) = Run("vm", "attach-disk", "cd", "x.qcow2", "--pool", "nopool", "--size", "1M");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("'nopool'", error);
        (code, _, error) = Run("vm", "attach-disk", "cd", "../escape.qcow2", "--pool", "default", "--size", "1M");
        Assert.NotEqual(0, code);
        Assert.Contains("../escape.qcow2", error);
        Assert.Single(Of("block"));
        Assert.Single(_store.Get("cd").Disks);
    }

    [Fact]
    public void Detach_disk_removes_a_configured_data_disk_live_but_refuses_the_boot_disk_with_exit_4()
    {
        var images = Directory.CreateDirectory(Path.Combine(_root.Path, "images")).FullName;
        string boot = Path.Combine(images, "boot.raw"), data = Path.Combine(images, "data.raw");
        foreach (var path in new[] { boot, data }) File.WriteAllBytes(path, new byte[1 << 20]);
        var definition = TestDefinitions.Minimal("cdd") with { Disks = new ValueList<DiskDefinition>([new DiskDefinition(boot), new DiskDefinition(data)]) };
        _manager.New(definition);
        using var vmm = new FakeVmm(_store.SocketPath("cdd"), VmmConfigBuilder.BuildConfiguration(definition, "/s", "/l").Devices);

        var (code, _, error) = Run("vm", "detach-disk", "cdd", boot, "--live");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("boot disk", error);

        (code, var output, error) = Run("vm", "detach-disk", "cdd", data, "--live");
        Assert.True(code == 0, error);
        Assert.Contains("(applied to the running VM and stored)", output);
        Assert.Equal(boot, Assert.Single(vmm.Devices, d => d.Type == "block").Options!["path"].GetString());
        Assert.Equal(boot, Assert.Single(_store.Get("cdd").Disks).Path);
    }

    [Fact]
    public void A_guest_that_keeps_the_disk_is_exit_4_and_the_disk_stays_defined()
    {
        Assert.Equal(0, Run("vm", "attach-disk", "cd", "keep.raw", "--size", "1M").Code);
        _vmm.GuestEjects = _ => false;

        var (code, _, error) = Run("vm", "detach-disk", "cd", "keep.raw", "--timeout", "0");

        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("did not release disk 'keep.raw'", error);
        Assert.Single(_store.Get("cd").Disks);
        Assert.Single(Of("block"));
    }

    [Fact]
    public void Attach_nic_and_detach_nic_by_tap_or_mac()
    {
        var (code, _, error) = Run("vm", "attach-nic", "cd", "--tap", "tap-c1", "--mac", "52:54:00:00:00:c1");
        Assert.True(code == 0, error);
        (code, _, error) = Run("vm", "attach-nic", "cd", "--bridge", "br0", "--mac", "52:54:00:00:00:c2");
        Assert.True(code == 0, error);
        Assert.Equal(["tap-c1", VmmConfigBuilder.GeneratedTapName("cd", 1)], Of("net").Select(d => d.Options!["tap"].GetString()));

        (code, _, error) = Run("vm", "detach-nic", "cd", "tap-c1");
        Assert.True(code == 0, error);
        (code, _, error) = Run("vm", "detach-nic", "cd", "52:54:00:00:00:C2");
        Assert.True(code == 0, error);
        Assert.Empty(Of("net"));
        Assert.Empty(_store.Get("cd").NetworkAdapters);

        (code, _, error) = Run("vm", "detach-nic", "cd", "tap-zz");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("no network adapter with MAC address or tap 'tap-zz'", error);
    }

    [Fact]
    public void An_older_vmm_is_a_clear_error_and_config_stores_for_the_next_start()
    {
        _vmm.Hotplug = HotplugSupport.UnknownRequest;

        var (code, _, error) = Run("vm", "attach-nic", "cd", "--tap", "tap-o");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("cannot hot-plug", error);
        Assert.Contains("--config", error);
        Assert.Empty(_store.Get("cd").NetworkAdapters);

        (code, var output, error) = Run("vm", "attach-nic", "cd", "--tap", "tap-o", "--config");
        Assert.True(code == 0, error);
        Assert.Contains("(stored; the running VM gets it when it is restarted)", output);
        Assert.Single(_store.Get("cd").NetworkAdapters);
    }

    [Fact]
    public void Usage_errors_name_the_problem()
    {
        Assert.Contains("exactly one of --tap, --bridge, --network and --sriov-vf", Run("vm", "attach-nic", "cd").Err);
        Assert.Contains("exactly one of --tap, --bridge, --network and --sriov-vf", Run("vm", "attach-nic", "cd", "--tap", "a", "--bridge", "b").Err);
        Assert.Contains("--format must be raw or qcow2", Run("vm", "attach-disk", "cd", "x.img", "--format", "vmdk").Err);
        Assert.Contains("needs a value", Run("vm", "attach-disk", "cd", "x.img", "--size").Err);
        Assert.Contains("--timeout must be", Run("vm", "detach-disk", "cd", "x.img", "--timeout", "soon").Err);
        Assert.Contains("not both", Run("vm", "detach-nic", "cd", "tap0", "--live", "--config").Err);
        Assert.Equal(ExitCodes.Usage, Run("vm", "attach-disk", "cd").Code);
        Assert.Contains("Usage: kvmps vm attach-disk", Run("vm", "attach-disk", "--help").Out);
        Assert.Contains("Usage: kvmps vm detach-nic", Run("vm", "detach-nic", "--help").Out);
        Assert.Empty(_vmm.Requests);
    }
}
