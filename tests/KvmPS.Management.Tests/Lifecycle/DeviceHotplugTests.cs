using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// Disks and network adapters on a running VM, against <see cref="FakeVmm"/> (the engine's control server with a
/// scripted VM): hot-plugged through <c>device.add</c>/<c>device.remove</c> and stored only once the VMM has done it.
/// </summary>
public sealed class DeviceHotplugTests : IDisposable
{
    private const string Name = "hp";
    private readonly TempDirectory _root = new();
    private readonly VmStore _store;
    private readonly VmManager _manager;
    private FakeVmm _vmm;

    public DeviceHotplugTests()
    {
        _store = VmStore.Open(_root.Path);
        _manager = new VmManager(_store, diskImageCreator: new StorageDiskImageCreator(),
            options: new VmManagerOptions { QueryTimeout = TimeSpan.FromSeconds(5), DeviceRemoveTimeout = TimeSpan.FromSeconds(3) });
        _vmm = Boot(TestDefinitions.Minimal(Name) with
        {
            NetworkAdapters = new ValueList<NetworkAdapterDefinition>([new NetworkAdapterDefinition("tap-a", null, MacAddress.Parse("52:54:00:00:00:0a"))]),
        });
    }

    public void Dispose()
    {
        _vmm.Dispose();
        _root.Dispose();
    }

    /// <summary>Stores the VM and "starts" it: the fake VMM gets the devices a real start would configure.</summary>
    private FakeVmm Boot(VmDefinition definition)
    {
        _manager.New(definition);
        var devices = VmmConfigBuilder.BuildConfiguration(definition, "/s", "/l", p => _store.ResolveDiskPath(definition.Name, p)).Devices;
        return new FakeVmm(_store.SocketPath(definition.Name), devices);
    }

    private string ImagePath(string file) => _store.ResolveDiskPath(Name, file);

    private DeviceDescription? Block(string file) =>
        _vmm.Devices.FirstOrDefault(d => d.Type == "block" && d.Options!["path"].GetString() == ImagePath(file));

    private DeviceDescription? Net(string mac) =>
        _vmm.Devices.FirstOrDefault(d => d.Type == "net" && d.Options!["mac"].GetString() == mac);

    [Fact]
    public void The_fake_vmm_is_a_running_vm_that_can_hot_plug()
    {
        var info = _manager.Get(Name);
        Assert.Equal(VmState.Running, info.State);
        Assert.True(info.Live!.DeviceHotplug);
    }

    /// <summary>A disk path the store refuses to record never reaches the running VM (it was hot-plugged, then refused).</summary>
    [Fact]
    public void AttachDisk_of_a_path_outside_the_allowed_folders_is_refused_before_the_vmm_is_asked()
    {
        var confined = new VmManager(VmStore.Open(_root.Path, allowedPaths: AllowedPaths.StoreOnly(_root.Path)), diskImageCreator: new StorageDiskImageCreator(),
            options: new VmManagerOptions { QueryTimeout = TimeSpan.FromSeconds(5) });
        using var outside = new TempDirectory();
        string image = Path.Combine(outside.Path, "outside.qcow2");
        File.WriteAllBytes(image, []);

        var error = Assert.Throws<PathNotAllowedException>(() => confined.AttachDisk(Name, new DiskAttachRequest(image)));

        Assert.Contains(image, error.Message);
        Assert.Empty(_vmm.Requests);
        Assert.Null(_vmm.Devices.FirstOrDefault(d => d.Type == "block"));
        Assert.Empty(_store.Get(Name).Disks);
    }

    [Fact]
    public void AttachDisk_creates_the_image_hot_plugs_it_as_a_start_would_and_then_stores_it()
    {
        var result = _manager.AttachDisk(Name, new DiskAttachRequest("data.qcow2", CreateSizeBytes: 1L << 20));

        var change = Assert.Single(result.Changes);
        Assert.Equal(("Disks", ChangeApplication.AppliedLive), (change.Property, change.Application));
        Assert.True(File.Exists(ImagePath("data.qcow2")));
        var stored = _store.Get(Name);
        Assert.Equal("data.qcow2", Assert.Single(stored.Disks).Path);
        // The spec sent is the one VmmConfigBuilder gives disk 0 of the stored definition (serial hp-d0 included).
        var sent = Assert.IsType<DeviceAddRequest>(Assert.Single(_vmm.Requests));
        Assert.Equal(VmmConfigBuilder.DiskDevice(stored, 0, p => _store.ResolveDiskPath(Name, p)), sent.Device);
        Assert.Equal("hp-d0", Assert.IsType<BlockDeviceSpec>(sent.Device).Serial);
        Assert.NotNull(Block("data.qcow2"));
    }

    [Fact]
    public void A_disk_hot_added_after_a_removal_gets_a_serial_no_disk_of_the_running_vm_has()
    {
        _manager.AttachDisk(Name, new DiskAttachRequest("a.raw", CreateSizeBytes: 1L << 20)); // hp-d0
        _manager.AttachDisk(Name, new DiskAttachRequest("b.raw", CreateSizeBytes: 1L << 20)); // hp-d1
        _manager.DetachDisk(Name, "a.raw", removeTimeout: TimeSpan.FromSeconds(7));          // b is now disk 0, still hp-d1 in the guest

        _manager.AttachDisk(Name, new DiskAttachRequest("c.raw", CreateSizeBytes: 1L << 20)); // position 1: hp-d1 is taken

        Assert.Equal("hp-d1", Block("b.raw")!.Options!["serial"].GetString());
        Assert.Equal("hp-d2", Block("c.raw")!.Options!["serial"].GetString());
    }

    [Fact]
    public void DetachDisk_removes_the_device_describe_lists_for_the_image_then_stores()
    {
        _manager.AttachDisk(Name, new DiskAttachRequest("data.raw", CreateSizeBytes: 1L << 20));
        var pci = Block("data.raw")!.Pci;

        var result = _manager.DetachDisk(Name, "data.raw", removeTimeout: TimeSpan.FromSeconds(7));

        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(result.Changes).Application);
        // The eject is requested under the store lock without waiting, then waited for (describe) outside it.
        Assert.Equal((pci, (int?)0), _vmm.Requests.OfType<DeviceRemoveRequest>().Select(r => (r.Pci, r.TimeoutMs)).Single());
        Assert.Null(Block("data.raw"));
        Assert.Empty(_store.Get(Name).Disks);
        Assert.True(File.Exists(ImagePath("data.raw"))); // the image is kept
    }

    [Fact]
    public void A_guest_that_keeps_the_disk_past_the_timeout_is_a_typed_error_and_the_definition_keeps_it()
    {
        _manager.AttachDisk(Name, new DiskAttachRequest("keep.raw", CreateSizeBytes: 1L << 20));
        var pci = Block("keep.raw")!.Pci;
        _vmm.GuestEjects = _ => false;

        var e = Assert.Throws<VmDeviceRemovalTimeoutException>(() => _manager.DetachDisk(Name, "keep.raw", removeTimeout: TimeSpan.FromMilliseconds(1500)));

        Assert.Equal(("Disks", "keep.raw", pci, TimeSpan.FromMilliseconds(1500)), (e.Property, e.Device, e.Pci, e.Timeout));
        Assert.Contains("did not release disk 'keep.raw'", e.Message);
        Assert.Contains("stays attached and in the definition", e.Message);

        Assert.Equal("keep.raw", Assert.Single(_store.Get(Name).Disks).Path);
        Assert.NotNull(Block("keep.raw"));

        // Once the guest lets go, asking again removes it.
        _vmm.GuestEjects = _ => true;
        _manager.DetachDisk(Name, "keep.raw");
        Assert.Empty(_store.Get(Name).Disks);
    }

    [Fact]
    public void Waiting_for_the_guest_does_not_hold_the_store_lock()
    {
        _manager.AttachDisk(Name, new DiskAttachRequest("slow.raw", CreateSizeBytes: 1L << 20));
        _vmm.GuestEjects = _ => false;
        var removal = Task.Run(() => Assert.Throws<VmDeviceRemovalTimeoutException>(() => _manager.DetachDisk(Name, "slow.raw", removeTimeout: TimeSpan.FromSeconds(4))));
        while (!_vmm.Requests.OfType<DeviceRemoveRequest>().Any())
            Thread.Sleep(10);
        Thread.Sleep(300); // the removal is now waiting for the guest

        var clock = System.Diagnostics.Stopwatch.StartNew();
        _manager.New(TestDefinitions.Minimal("other")); // takes the store lock
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"another VM's change waited {clock.Elapsed} for the lock");
        Assert.False(removal.IsCompleted);
        removal.Wait(TimeSpan.FromSeconds(10));
        Assert.Equal("slow.raw", Assert.Single(_store.Get(Name).Disks).Path);
    }

    [Fact]
    public void The_default_removal_timeout_comes_from_the_options()
    {
        _manager.AttachDisk(Name, new DiskAttachRequest("t.raw", CreateSizeBytes: 1L << 20));
        _vmm.GuestEjects = _ => false;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<VmDeviceRemovalTimeoutException>(() => _manager.DetachDisk(Name, "t.raw"));
        Assert.Equal(TimeSpan.FromSeconds(3), e.Timeout);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void A_disk_the_vmm_refuses_is_not_stored_and_its_new_image_is_deleted()
    {
        _vmm.RefuseAdd = "block device: cannot open the image";

        var e = Assert.Throws<VmDeviceHotplugRefusedException>(() => _manager.AttachDisk(Name, new DiskAttachRequest("bad.raw", CreateSizeBytes: 1L << 20)));

        Assert.Equal(("Disks", ControlErrorCodes.InvalidArgument, "block device: cannot open the image"), (e.Property, e.VmmCode, e.VmmReason));
        Assert.Equal("bad.raw", e.Device);
        Assert.Contains("refused adding disk 'bad.raw'", e.Message);
        Assert.Empty(_store.Get(Name).Disks);
        Assert.False(File.Exists(ImagePath("bad.raw")));
    }

    [Fact]
    public void A_vmm_that_does_not_know_device_add_is_a_clear_error_and_config_scope_still_stores()
    {
        _vmm.Hotplug = HotplugSupport.UnknownRequest;

        var e = Assert.Throws<VmDeviceHotplugNotSupportedException>(() => _manager.AttachDisk(Name, new DiskAttachRequest("old.raw", CreateSizeBytes: 1L << 20)));
        Assert.Contains("cannot hot-plug", e.Message);
        Assert.Contains("stop the VM", e.Message);
        Assert.Contains("-Config", e.Message);
        Assert.Empty(_store.Get(Name).Disks);
        Assert.False(File.Exists(ImagePath("old.raw")));

        var stored = _manager.AttachDisk(Name, new DiskAttachRequest("old.raw", CreateSizeBytes: 1L << 20), ChangeScope.Config);
        Assert.Equal(ChangeApplication.RestartNeeded, Assert.Single(stored.Changes).Application);
        Assert.Single(_store.Get(Name).Disks);
        Assert.Single(_vmm.Requests); // only the refused attempt reached the VMM
    }

    [Fact]
    public void A_vmm_that_does_not_list_hot_plug_stores_for_the_next_start_and_live_scope_refuses()
    {
        _vmm.Hotplug = HotplugSupport.NotListed;
        Assert.False(_manager.Get(Name).Live!.DeviceHotplug);

        var live = Assert.Throws<ManagementValidationException>(() => _manager.AddNetworkAdapter(Name, "tap-b", null, scope: ChangeScope.Live));
        Assert.Equal("NetworkAdapters", live.Property);
        Assert.Contains("cannot hot-plug", live.Message);
        Assert.Single(_store.Get(Name).NetworkAdapters);

        var current = _manager.AddNetworkAdapter(Name, "tap-b", null);
        Assert.Equal(ChangeApplication.RestartNeeded, Assert.Single(current.Changes).Application);
        Assert.Equal(2, _store.Get(Name).NetworkAdapters.Count);
        Assert.Empty(_vmm.Requests);
    }

    [Fact]
    public void Network_adapters_are_added_and_removed_live_found_by_mac()
    {
        var mac = MacAddress.Parse("52:54:00:00:00:0b");
        _manager.AddNetworkAdapter(Name, null, "br0", mac);

        var stored = _store.Get(Name);
        var sent = Assert.IsType<NetDeviceSpec>(_vmm.Requests.OfType<DeviceAddRequest>().Single().Device);
        Assert.Equal(VmmConfigBuilder.NetworkAdapterDevice(stored, 1), sent);
        Assert.Equal((VmmConfigBuilder.GeneratedTapName(Name, 1), "br0"), (sent.Tap, sent.Bridge));
        var pci = Net("52:54:00:00:00:0b")!.Pci;

        var removed = _manager.RemoveNetworkAdapters(Name, [mac]);

        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(removed.Changes).Application);
        Assert.All(_vmm.Requests.OfType<DeviceRemoveRequest>(), r => Assert.Equal(pci, r.Pci));
        Assert.Null(Net("52:54:00:00:00:0b"));
        Assert.Equal("52:54:00:00:00:0a", Assert.Single(_store.Get(Name).NetworkAdapters).MacAddress.ToString());
    }

    [Fact]
    public void An_adapter_the_vm_was_started_with_is_removed_live_and_the_definition_follows()
    {
        var boot = MacAddress.Parse("52:54:00:00:00:0a");
        Assert.DoesNotContain("52:54:00:00:00:0a", _manager.Get(Name).Live!.ColdPluggedAdapters);
        Assert.True(_manager.Get(Name).Live!.RemovesConfiguredDevices);

        var result = _manager.RemoveNetworkAdapters(Name, [boot], ChangeScope.Live);

        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(result.Changes).Application);
        Assert.Empty(_store.Get(Name).NetworkAdapters);
        Assert.Null(Net("52:54:00:00:00:0a")); // the guest ejected it: the VMM no longer has it
        Assert.Equal("00:01.0", Assert.Single(_vmm.Requests.OfType<DeviceRemoveRequest>()).Pci);
    }

    /// <summary>The VMM again, started from the stored definition, as one from before live removal of configured devices.</summary>
    private void RestartAsOlderVmm()
    {
        _vmm.Dispose();
        var definition = _store.Get(Name);
        var devices = VmmConfigBuilder.BuildConfiguration(definition, "/s", "/l", p => _store.ResolveDiskPath(Name, p)).Devices;
        _vmm = new FakeVmm(_store.SocketPath(Name), devices, removesConfiguredDevices: false);
    }

    [Fact]
    public void An_older_vmm_cannot_remove_a_configured_adapter_so_the_removal_waits_for_a_restart()
    {
        RestartAsOlderVmm();
        var boot = MacAddress.Parse("52:54:00:00:00:0a");
        Assert.Contains("52:54:00:00:00:0a", _manager.Get(Name).Live!.ColdPluggedAdapters);

        var live = Assert.Throws<ManagementValidationException>(() => _manager.RemoveNetworkAdapters(Name, [boot], ChangeScope.Live));
        Assert.Equal("NetworkAdapters", live.Property);
        Assert.Contains("was part of the VM when it started and the running VMM removes only adapters added since", live.Message);
        Assert.Single(_store.Get(Name).NetworkAdapters);

        var current = _manager.RemoveNetworkAdapters(Name, [boot]);
        Assert.Equal(ChangeApplication.RestartNeeded, Assert.Single(current.Changes).Application);
        Assert.Empty(_store.Get(Name).NetworkAdapters);
        Assert.NotNull(Net("52:54:00:00:00:0a")); // the running VM keeps it until it is restarted
        Assert.Empty(_vmm.Requests);
    }

    [Fact]
    public void The_boot_disk_cannot_be_removed_live_a_second_configured_disk_can()
    {
        const string vm = "hpd";
        var images = Directory.CreateDirectory(Path.Combine(_root.Path, "images")).FullName;
        string boot = Path.Combine(images, "boot.raw"), data = Path.Combine(images, "data.raw");
        foreach (var path in new[] { boot, data }) File.WriteAllBytes(path, new byte[1 << 20]);
        using var vmm = Boot(TestDefinitions.Minimal(vm) with { Disks = new ValueList<DiskDefinition>([new DiskDefinition(boot), new DiskDefinition(data)]) });
        DeviceDescription? block(string path) => vmm.Devices.FirstOrDefault(d => d.Type == "block" && d.Options!["path"].GetString() == path);
        Assert.Equal([boot], _manager.Get(vm).Live!.ColdPluggedDisks);

        var refused = Assert.Throws<ManagementValidationException>(() => _manager.DetachDisk(vm, boot, ChangeScope.Live));
        Assert.Contains("it is the VM's boot disk", refused.Message);
        Assert.Equal(2, _store.Get(vm).Disks.Count);

        var removed = _manager.DetachDisk(vm, data, ChangeScope.Live);
        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(removed.Changes).Application);
        Assert.Equal(boot, Assert.Single(_store.Get(vm).Disks).Path);
        Assert.Null(block(data));
        Assert.NotNull(block(boot));
    }

    [Fact]
    public void A_bridge_adapter_added_after_a_removal_does_not_take_a_tap_the_running_vm_still_uses()
    {
        _manager.AddNetworkAdapter(Name, null, "br0", MacAddress.Parse("52:54:00:00:00:0b")); // index 1: tap ...n1
        _manager.AddNetworkAdapter(Name, null, "br0", MacAddress.Parse("52:54:00:00:00:0c")); // index 2: tap ...n2
        _manager.RemoveNetworkAdapters(Name, [MacAddress.Parse("52:54:00:00:00:0b")]);           // 0c is index 1 now, still on n2
        _manager.AddNetworkAdapter(Name, null, "br0", MacAddress.Parse("52:54:00:00:00:0d")); // index 2 again: n2 is taken

        var taps = _vmm.Devices.Where(d => d.Type == "net").Select(d => d.Options!["tap"].GetString()).ToList();
        Assert.Equal(["tap-a", VmmConfigBuilder.GeneratedTapName(Name, 2), VmmConfigBuilder.GeneratedTapName(Name, 3)], taps);
    }

    [Fact]
    public void FindNetworkAdapter_takes_a_mac_in_any_case_or_a_tap()
    {
        Assert.Equal("tap-a", _manager.FindNetworkAdapter(Name, "52:54:00:00:00:0A").TapName);
        Assert.Equal("tap-a", _manager.FindNetworkAdapter(Name, "tap-a").TapName);
        var e = Assert.Throws<VmDeviceNotFoundException>(() => _manager.FindNetworkAdapter(Name, "tap-z"));
        Assert.Equal("tap-z", e.Device);
    }

    [Fact]
    public void A_removal_the_guest_does_not_finish_leaves_the_earlier_steps_stored()
    {
        // Two removals in one change (as a manifest makes): the guest ejects the first, keeps the second.
        _manager.AttachDisk(Name, new DiskAttachRequest("one.raw", CreateSizeBytes: 1L << 20));
        _manager.AttachDisk(Name, new DiskAttachRequest("two.raw", CreateSizeBytes: 1L << 20));
        var first = Block("one.raw")!.Pci;
        _vmm.GuestEjects = pci => pci == first;

        var e = Assert.Throws<VmDeviceRemovalTimeoutException>(() =>
            _manager.Update(Name, d => d with { Disks = ValueList<DiskDefinition>.Empty }, deviceRemoveTimeout: TimeSpan.FromMilliseconds(10)));

        Assert.Contains("two.raw", e.Message);
        Assert.Null(Block("one.raw"));
        Assert.NotNull(Block("two.raw"));
        Assert.Equal("two.raw", Assert.Single(_store.Get(Name).Disks).Path);
    }

    [Fact]
    public void An_addition_the_vmm_refuses_after_another_went_in_stores_the_one_that_did()
    {
        // Additions go disks first, then adapters: the disk is hot-plugged, the adapter refused.
        Directory.CreateDirectory(Path.GetDirectoryName(ImagePath("m.raw"))!);
        File.WriteAllBytes(ImagePath("m.raw"), new byte[1 << 20]);
        _vmm.RefuseAdd = "tap: cannot open /dev/net/tun";
        _vmm.RefuseAddWhen = spec => spec is NetDeviceSpec;

        var e = Assert.Throws<VmDeviceHotplugRefusedException>(() => _manager.Update(Name, d => d with
        {
            Disks = new ValueList<DiskDefinition>([new DiskDefinition("m.raw")]),
            NetworkAdapters = new ValueList<NetworkAdapterDefinition>(d.NetworkAdapters.Append(new NetworkAdapterDefinition("tap-z", null, MacAddress.Parse("52:54:00:00:00:0f")))),
        }));

        Assert.Equal("NetworkAdapters", e.Property);
        var stored = _store.Get(Name);
        Assert.Equal("m.raw", Assert.Single(stored.Disks).Path);
        Assert.Equal("tap-a", Assert.Single(stored.NetworkAdapters).TapName);
        Assert.NotNull(Block("m.raw"));
    }

    [Fact]
    public void The_reconciler_plans_disk_and_adapter_changes_on_the_running_vm_as_live_and_applies_them_in_place()
    {
        var manifest = DesiredStateReader.Parse("""
            @{ Name = 'hp'; State = 'Running'; MemoryStartupBytes = 256MB
               Disks = @( @{ Path = 'r.qcow2'; SizeBytes = 1MB } )
               NetworkAdapters = @( @{ Tap = 'tap-a'; MacAddress = '52:54:00:00:00:0a' }, @{ Bridge = 'br0'; MacAddress = '52:54:00:00:00:0d' } ) }
            """, "m.psd1");
        var reconciler = new Reconciler(_manager);

        var plan = reconciler.Plan(manifest);
        var update = Assert.Single(plan.Actions);
        Assert.Equal(ReconcileActionKind.UpdateLive, update.Kind);
        Assert.Equal(["Disks", "NetworkAdapters"], update.Changes.Select(c => c.Property));
        Assert.Empty(plan.Warnings);

        var result = reconciler.Set(manifest);

        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.All(result.Results.Single().Change!.Changes, c => Assert.Equal(ChangeApplication.AppliedLive, c.Application));
        Assert.True(File.Exists(ImagePath("r.qcow2"))); // created from SizeBytes, as New does
        Assert.NotNull(Block("r.qcow2"));
        Assert.NotNull(Net("52:54:00:00:00:0d"));
        Assert.NotNull(Net("52:54:00:00:00:0a"));
        Assert.Equal(Environment.ProcessId, _manager.Get(Name).Pid); // the same VMM throughout
        Assert.True(reconciler.Plan(manifest).IsEmpty);

        // Removing the adapter the VM was started with is live too (ACPI eject of its configured slot), in the same VMM.
        var without = DesiredStateReader.Parse("@{ Name = 'hp'; MemoryStartupBytes = 256MB; NetworkAdapters = @( @{ Bridge = 'br0'; MacAddress = '52:54:00:00:00:0d' } ) }", "m.psd1");
        var removal = reconciler.Plan(without);
        Assert.Equal(ReconcileActionKind.UpdateLive, Assert.Single(removal.Actions).Kind);
        Assert.Empty(removal.Warnings);
        Assert.True(reconciler.Set(without).Succeeded);
        Assert.Null(Net("52:54:00:00:00:0a"));
        Assert.Equal(Environment.ProcessId, _manager.Get(Name).Pid);

        // With a VMM from before live removal of configured devices, the same kind of change needs a restart.
        RestartAsOlderVmm();
        var older = DesiredStateReader.Parse("@{ Name = 'hp'; MemoryStartupBytes = 256MB; NetworkAdapters = @() }", "m.psd1");
        var restart = reconciler.Plan(older);
        Assert.Equal(ReconcileActionKind.UpdateNeedsRestart, Assert.Single(restart.Actions).Kind);
        Assert.Contains(restart.Warnings, w => w.Contains("NetworkAdapters", StringComparison.Ordinal));
    }

    [Fact]
    public void The_reconciler_plans_a_restart_when_the_vmm_cannot_hot_plug()
    {
        _vmm.Hotplug = HotplugSupport.NotListed;
        var manifest = DesiredStateReader.Parse("@{ Name = 'hp'; MemoryStartupBytes = 256MB; Disks = @( @{ Path = 'r.raw'; SizeBytes = 1MB } ) }", "m.psd1");

        var plan = new Reconciler(_manager).Plan(manifest);

        Assert.Equal(ReconcileActionKind.UpdateNeedsRestart, Assert.Single(plan.Actions).Kind);
        Assert.Contains(plan.Warnings, w => w.Contains("Disks", StringComparison.Ordinal));
    }
}
