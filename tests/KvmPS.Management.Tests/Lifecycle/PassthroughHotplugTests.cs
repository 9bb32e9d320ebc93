using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.HostDevices;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// Passthrough devices on a running VM, against <see cref="FakeVmm"/>: vfio-user sockets and host PCI functions (over a
/// fake sysfs tree) hot-plugged through <c>device.add</c>/<c>device.remove</c> and stored once the VMM has done it; a host
/// function is bound to vfio-pci for the add and given back after the guest's eject. A vfio-user socket is connected by
/// management and passed open with the add (a listener here stands for the server).
/// </summary>
public sealed class PassthroughHotplugTests : IDisposable
{
    private const string Name = "pt", Nic = "0000:03:00.0";
    private readonly TempDirectory _root = new();
    private readonly TempDirectory _serverDir = new();
    private readonly System.Net.Sockets.Socket _server = new(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
    private string Socket => Path.Combine(_serverDir.Path, "dev.sock");
    private readonly FakeSysfs _sysfs = new();
    private readonly VmStore _store;
    private readonly VmManager _manager;
    private FakeVmm? _vmm;

    public PassthroughHotplugTests()
    {
        _store = VmStore.Open(_root.Path);
        _manager = new VmManager(_store, options: new VmManagerOptions { QueryTimeout = TimeSpan.FromSeconds(5), DeviceRemoveTimeout = TimeSpan.FromSeconds(3) })
        {
            PassthroughHostFactory = () => new PciPassthroughHost(_sysfs.Host, _sysfs.Kernel),
        };
        _sysfs.AddDriver("vfio-pci");
        _sysfs.AddDevice(Nic, "e1000e", iommuGroup: 7);
        _server.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(Socket));
        _server.Listen(4);
    }

    public void Dispose()
    {
        _vmm?.Dispose();
        _server.Dispose();
        _serverDir.Dispose();
        _sysfs.Dispose();
        _root.Dispose();
    }

    private FakeVmm Boot(VmDefinition definition)
    {
        _manager.New(definition);
        var devices = VmmConfigBuilder.BuildConfiguration(definition, "/s", "/l", p => _store.ResolveDiskPath(definition.Name, p)).Devices;
        return _vmm = new FakeVmm(_store.SocketPath(definition.Name), devices) { TakesPassedFiles = true };
    }

    private DeviceDescription? Device(string type, string key, string value) =>
        _vmm!.Devices.FirstOrDefault(d => d.Type == type && d.Options![key].GetString() == value);

    private string BindingRecord => PciPassthroughHost.StatePath(_store.VmDirectory(Name));

    [Fact]
    public void A_vfio_user_device_is_hot_plugged_then_stored_and_removed_live()
    {
        Boot(TestDefinitions.Minimal(Name));

        var added = _manager.AddVfioUserDevices(Name, [Socket]);

        var change = Assert.Single(added.Changes);
        Assert.Equal(("VfioUserDevices", ChangeApplication.AppliedLive), (change.Property, change.Application));
        var sent = Assert.IsType<DeviceAddRequest>(Assert.Single(_vmm!.Requests));
        Assert.Equal(Socket, Assert.IsType<VfioUserDeviceSpec>(sent.Device).Socket);
        Assert.Equal(1, sent.PassedFiles); // the connection management made, passed open
        Assert.Equal(["connected Unix stream socket"], _vmm.PassedFiles);
        Assert.True(_server.Poll(0, System.Net.Sockets.SelectMode.SelectRead), "management did not connect to the server");
        Assert.Equal([Socket], _store.Get(Name).VfioUserDevices);
        var pci = Device("vfio-user", "socket", Socket)!.Pci;

        var removed = _manager.RemoveVfioUserDevices(Name, [Socket]);

        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(removed.Changes).Application);
        Assert.Equal(pci, Assert.IsType<DeviceRemoveRequest>(_vmm.Requests.Last()).Pci);
        Assert.Null(Device("vfio-user", "socket", Socket));
        Assert.Empty(_store.Get(Name).VfioUserDevices);
    }

    [Fact]
    public void A_vfio_user_device_the_vmm_refuses_is_a_typed_error_naming_it_and_nothing_is_stored()
    {
        Boot(TestDefinitions.Minimal(Name));
        _vmm!.RefuseAdd = $"device.add: vfio-user socket {Socket}: cannot connect: No such file or directory";

        var e = Assert.Throws<VmDeviceHotplugRefusedException>(() => _manager.AddVfioUserDevices(Name, [Socket]));

        Assert.Contains(Socket, e.Message);
        Assert.Contains("cannot connect", e.Message);
        Assert.Empty(_store.Get(Name).VfioUserDevices);
    }

    [Fact]
    public void A_vfio_user_socket_no_server_listens_on_is_refused_before_the_vmm_is_asked()
    {
        Boot(TestDefinitions.Minimal(Name));
        string absent = Path.Combine(_serverDir.Path, "nobody.sock");

        var e = Assert.Throws<VmDeviceHotplugRefusedException>(() => _manager.AddVfioUserDevices(Name, [absent]));

        Assert.Contains(absent, e.Message);
        Assert.Contains("cannot connect", e.Message);
        Assert.Empty(_vmm!.Requests);
        Assert.Empty(_store.Get(Name).VfioUserDevices);
    }

    [Fact]
    public void A_vmm_from_before_passed_vfio_user_sockets_is_asked_again_by_path()
    {
        Boot(TestDefinitions.Minimal(Name));
        _vmm!.TakesPassedFiles = false;
        _vmm.PassedFilesRefusal = "device.add: a vfio-user device takes no passed files, but 1 came with the request (they were closed).";

        var added = _manager.AddVfioUserDevices(Name, [Socket]);

        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(added.Changes).Application);
        Assert.Null(Assert.IsType<DeviceAddRequest>(Assert.Single(_vmm.Requests)).PassedFiles); // the retry, by path
        Assert.NotNull(Device("vfio-user", "socket", Socket));
        Assert.Equal([Socket], _store.Get(Name).VfioUserDevices);
    }

    [Fact]
    public void A_vm_started_with_ksm_and_no_vfio_user_device_takes_one_at_its_next_start_and_live_scope_says_why()
    {
        Boot(TestDefinitions.Minimal(Name) with { MemoryBacking = new MemoryBackingSettings(KsmEnabled: true) });

        var error = Assert.Throws<ManagementValidationException>(() => _manager.Update(Name,
            d => d with { VfioUserDevices = new ValueList<string>([Socket]) }, ChangeScope.Live));
        Assert.Contains("memfds", error.Message);
        Assert.Empty(_store.Get(Name).VfioUserDevices);

        var stored = _manager.AddVfioUserDevices(Name, [Socket]);

        Assert.Equal(ChangeApplication.RestartNeeded, Assert.Single(stored.Changes).Application);
        Assert.Empty(_vmm!.Requests);
        Assert.Equal([Socket], _store.Get(Name).VfioUserDevices);
    }

    [Fact]
    public void A_host_function_is_bound_to_vfio_pci_for_the_hot_plug_and_given_back_after_the_eject()
    {
        Boot(TestDefinitions.Minimal(Name));

        var added = _manager.AddPciPassthrough(Name, [PciAddress.Parse(Nic)]);

        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(added.Changes).Application);
        Assert.Equal("vfio-pci", _sysfs.DriverOf(Nic));
        Assert.Equal([$"{Nic} e1000e"], File.ReadAllLines(BindingRecord));
        var sent = Assert.IsType<DeviceAddRequest>(Assert.Single(_vmm!.Requests));
        Assert.Equal(Nic, Assert.IsType<VfioDeviceSpec>(sent.Device).Host);
        Assert.NotNull(Device("vfio", "host", Nic));

        var removed = _manager.RemovePciPassthrough(Name, [PciAddress.Parse(Nic)]);

        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(removed.Changes).Application);
        Assert.Null(Device("vfio", "host", Nic));
        Assert.Equal("e1000e", _sysfs.DriverOf(Nic));
        Assert.False(File.Exists(BindingRecord));
        Assert.Empty(_store.Get(Name).PciPassthrough);
    }

    [Fact]
    public void A_host_function_the_vmm_refuses_goes_back_to_its_driver_and_is_not_recorded()
    {
        Boot(TestDefinitions.Minimal(Name));
        _vmm!.RefuseAdd = $"device.add: vfio {Nic}: no IOMMU";

        Assert.Throws<VmDeviceHotplugRefusedException>(() => _manager.AddPciPassthrough(Name, [PciAddress.Parse(Nic)]));

        Assert.Equal("e1000e", _sysfs.DriverOf(Nic));
        Assert.False(File.Exists(BindingRecord));
        Assert.Empty(_store.Get(Name).PciPassthrough);
    }

    [Fact]
    public void A_host_function_the_host_cannot_give_is_refused_before_the_vmm_is_asked()
    {
        Boot(TestDefinitions.Minimal(Name));
        _sysfs.AddDevice("0000:03:00.1", "e1000e", iommuGroup: 7); // shares the group, stays with its host driver

        var e = Assert.Throws<PciPassthroughException>(() => _manager.AddPciPassthrough(Name, [PciAddress.Parse(Nic)]));

        Assert.Contains("IOMMU group 7 also holds 0000:03:00.1", e.Message);
        Assert.Empty(_vmm!.Requests);
        Assert.Equal("e1000e", _sysfs.DriverOf(Nic));
        Assert.False(File.Exists(BindingRecord));
    }
}
