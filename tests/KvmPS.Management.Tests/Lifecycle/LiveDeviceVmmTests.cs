using KvmPS.Contract;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// Disks on a running built-in guest with the real kvmps-vmm: hot-plugged (ACPI PCI hot-plug) and released by the
/// guest in the same VMM process, through VmManager and through the reconciler. <see cref="DeviceHotplugTests"/> has
/// the failure paths against a scripted VMM.
/// </summary>
[Collection(VmmCollection.Name)]
public sealed class LiveDeviceVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly VmManager _manager;
    private readonly TempDirectory _dir = new();

    public LiveDeviceVmmTests(VmmFixture fixture)
    {
        _sandbox = new LifecycleSandbox(fixture, new StorageDiskImageCreator());
        _manager = _sandbox.Manager;
    }

    public void Dispose()
    {
        _sandbox.Dispose();
        _dir.Dispose();
    }

    private IReadOnlyList<DeviceDescription> LiveBlockDevices(string name)
    {
        using var client = VmmClient.Connect(_sandbox.Store.SocketPath(name));
        return client.Describe().Devices.Where(d => d.Type == BlockDeviceSpec.TypeName).ToList();
    }

    private static string? PathOf(DeviceDescription device) => device.Options?["path"].GetString();

    [Fact]
    public void A_disk_is_hot_added_and_removed_in_the_same_vmm_and_the_definition_follows()
    {
        _manager.New(TestDefinitions.Minimal("hotdisk") with { Memory = MemorySettings.Fixed(64L << 20) });
        var pid = _manager.Start("hotdisk").Pid;
        Assert.True(_manager.Get("hotdisk").Live!.DeviceHotplug);
        var image = _sandbox.Store.ResolveDiskPath("hotdisk", "hot.qcow2");

        var added = _manager.AttachDisk("hotdisk", new DiskAttachRequest("hot.qcow2", CreateSizeBytes: 4L << 20));

        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(added.Changes).Application);
        Assert.Equal(pid, _manager.Get("hotdisk").Pid);
        Assert.Equal(image, PathOf(Assert.Single(LiveBlockDevices("hotdisk"))));
        Assert.Equal("hot.qcow2", Assert.Single(_sandbox.Store.Get("hotdisk").Disks).Path);

        var removed = _manager.DetachDisk("hotdisk", "hot.qcow2", removeTimeout: TimeSpan.FromSeconds(30));

        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(removed.Changes).Application);
        Assert.Equal(pid, _manager.Get("hotdisk").Pid);
        Assert.Empty(LiveBlockDevices("hotdisk"));
        Assert.Empty(_sandbox.Store.Get("hotdisk").Disks);
        Assert.True(File.Exists(image));
    }

    [Fact]
    public void The_boot_disk_the_vm_was_started_with_is_removed_at_the_next_start_not_live()
    {
        Directory.CreateDirectory(_dir.Path);
        var image = Path.Combine(_dir.Path, "boot.raw");
        File.WriteAllBytes(image, new byte[1 << 20]);
        _manager.New(TestDefinitions.Minimal("colddisk") with { Memory = MemorySettings.Fixed(64L << 20), Disks = new ValueList<DiskDefinition>([new DiskDefinition(image)]) });
        var pid = _manager.Start("colddisk").Pid;
        Assert.Contains(image, _manager.Get("colddisk").Live!.ColdPluggedDisks);

        var live = Assert.Throws<ManagementValidationException>(() => _manager.DetachDisk("colddisk", image, ChangeScope.Live));
        Assert.Contains("it is the VM's boot disk", live.Message);
        var stored = _manager.DetachDisk("colddisk", image);

        Assert.Equal(ChangeApplication.RestartNeeded, Assert.Single(stored.Changes).Application);
        Assert.Single(LiveBlockDevices("colddisk"));
        Assert.Empty(_sandbox.Store.Get("colddisk").Disks);
        Assert.Equal(pid, _manager.Get("colddisk").Pid);
    }

    [Fact]
    public void A_second_disk_the_vm_was_started_with_is_removed_live_its_image_closed_and_the_definition_follows()
    {
        Directory.CreateDirectory(_dir.Path);
        var boot = Path.Combine(_dir.Path, "boot2.raw");
        var data = Path.Combine(_dir.Path, "data2.raw");
        File.WriteAllBytes(boot, new byte[1 << 20]);
        File.WriteAllBytes(data, new byte[1 << 20]);
        _manager.New(TestDefinitions.Minimal("colddata") with { Memory = MemorySettings.Fixed(64L << 20), Disks = new ValueList<DiskDefinition>([new DiskDefinition(boot), new DiskDefinition(data)]) });
        var pid = _manager.Start("colddata").Pid;
        Assert.Equal([boot], _manager.Get("colddata").Live!.ColdPluggedDisks);

        var removed = _manager.DetachDisk("colddata", data, ChangeScope.Live);

        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(removed.Changes).Application);
        Assert.Equal(boot, Assert.Single(LiveBlockDevices("colddata")).Options!["path"].GetString());
        Assert.Equal(boot, Assert.Single(_sandbox.Store.Get("colddata").Disks).Path);
        Assert.Equal(pid, _manager.Get("colddata").Pid);
        Assert.DoesNotContain(Directory.GetFiles($"/proc/{pid}/fd"), fd => { try { return new FileInfo(fd).LinkTarget == data; } catch (IOException) { return false; } });
    }

    [Fact]
    public void A_paused_guest_keeps_the_disk_past_the_timeout_and_nothing_is_torn_down()
    {
        _manager.New(TestDefinitions.Minimal("keepdisk") with { Memory = MemorySettings.Fixed(64L << 20) });
        _manager.Start("keepdisk");
        _manager.AttachDisk("keepdisk", new DiskAttachRequest("k.raw", CreateSizeBytes: 1L << 20));
        _manager.Suspend("keepdisk");

        var e = Assert.Throws<VmDeviceRemovalTimeoutException>(() => _manager.DetachDisk("keepdisk", "k.raw", removeTimeout: TimeSpan.FromSeconds(1)));

        Assert.Equal("k.raw", e.Device);
        Assert.Equal(e.Pci, Assert.Single(LiveBlockDevices("keepdisk")).Pci);
        Assert.Equal("k.raw", Assert.Single(_sandbox.Store.Get("keepdisk").Disks).Path);
        _manager.Resume("keepdisk");
    }

    [Fact]
    public void The_reconciler_hot_adds_and_removes_a_disk_from_an_edited_manifest_in_the_same_vmm()
    {
        var path = Path.Combine(_dir.Path, "host.psd1");
        string Manifest(string disks) => $"@{{ VirtualMachines = @( @{{ Name = 'ds-disk'; MemoryStartupBytes = 64MB; State = 'Running'; Disks = @({disks}) }} ) }}";
        File.WriteAllText(path, Manifest(""));
        var reconciler = new Reconciler(_manager);
        Assert.True(reconciler.Set(DesiredStateReader.ReadFiles([path])).Succeeded);
        var pid = _manager.Get("ds-disk").Pid;

        File.WriteAllText(path, Manifest("@{ Path = 'm.qcow2'; SizeBytes = 4MB }"));
        var desired = DesiredStateReader.ReadFiles([path]);
        Assert.Equal([ReconcileActionKind.UpdateLive], reconciler.Plan(desired).Actions.Select(a => a.Kind));
        var result = reconciler.Set(desired);

        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(result.Results[0].Change!.Changes).Application);
        Assert.Equal(pid, _manager.Get("ds-disk").Pid);
        Assert.Equal(_sandbox.Store.ResolveDiskPath("ds-disk", "m.qcow2"), PathOf(Assert.Single(LiveBlockDevices("ds-disk"))));
        Assert.True(reconciler.Plan(desired).IsEmpty);

        File.WriteAllText(path, Manifest(""));
        desired = DesiredStateReader.ReadFiles([path]);
        result = reconciler.Set(desired);
        Assert.True(result.Succeeded, result.Failure?.Message);
        Assert.Equal(pid, _manager.Get("ds-disk").Pid);
        Assert.Empty(LiveBlockDevices("ds-disk"));
        Assert.True(reconciler.Plan(desired).IsEmpty);
    }
}
