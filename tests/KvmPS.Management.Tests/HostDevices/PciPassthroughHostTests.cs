using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.HostDevices;

public sealed class PciPassthroughHostTests : IDisposable
{
    private const string Nic = "0000:03:00.0", Sibling = "0000:03:00.1", Gpu = "0000:04:00.0";
    private readonly FakeSysfs _sysfs = new();
    private readonly TempDirectory _vm = new();

    public PciPassthroughHostTests()
    {
        _sysfs.AddDriver("vfio-pci");
        _sysfs.AddDevice(Nic, "e1000e", iommuGroup: 7);
        _sysfs.AddDevice(Sibling, "e1000e", iommuGroup: 7);
        _sysfs.AddDevice(Gpu, "amdgpu", iommuGroup: 12, classCode: 0x030000);
    }

    public void Dispose()
    {
        _sysfs.Dispose();
        _vm.Dispose();
    }

    private PciPassthroughHost Host => new(_sysfs.Host, _sysfs.Kernel);

    private static VmDefinition With(params string[] addresses) =>
        TestDefinitions.Minimal("vm1") with { PciPassthrough = new ValueList<PciAddress>(addresses.Select(PciAddress.Parse)) };

    [Fact]
    public void PrepareBindsTheWholeGroupAndReleaseGivesItBack()
    {
        var records = Host.PrepareForStart(With(Nic, Sibling, Gpu), _vm.Path, []);

        Assert.Equal(3, records.Count);
        Assert.All([Nic, Sibling, Gpu], a => Assert.Equal("vfio-pci", _sysfs.DriverOf(a)));
        Assert.Equal([$"{Nic} e1000e", $"{Sibling} e1000e", $"{Gpu} amdgpu"], File.ReadAllLines(PciPassthroughHost.StatePath(_vm.Path)));

        // Another process (a restarted service) gives them back from the record alone.
        new PciPassthroughHost(_sysfs.Host, _sysfs.Kernel).ReleaseAfterStop(_vm.Path);

        Assert.Equal("e1000e", _sysfs.DriverOf(Nic));
        Assert.Equal("e1000e", _sysfs.DriverOf(Sibling));
        Assert.Equal("amdgpu", _sysfs.DriverOf(Gpu));
        Assert.False(File.Exists(PciPassthroughHost.StatePath(_vm.Path)));
        Host.ReleaseAfterStop(_vm.Path); // nothing left: no error, no write
    }

    [Fact]
    public void AGroupMemberOnAHostDriverNotPassedIsRefusedBeforeAnythingIsRebound()
    {
        var e = Assert.Throws<PciPassthroughException>(() => Host.PrepareForStart(With(Gpu, Nic), _vm.Path, []));

        Assert.Equal(PciAddress.Parse(Nic), e.Address);
        Assert.Contains($"IOMMU group 7 also holds {Sibling}", e.Message);
        Assert.Contains("bound to e1000e and not passed to this VM", e.Message);
        Assert.Empty(_sysfs.Kernel.Writes);
        Assert.Equal("amdgpu", _sysfs.DriverOf(Gpu));
        Assert.False(File.Exists(PciPassthroughHost.StatePath(_vm.Path)));
    }

    [Fact]
    public void ADeviceHeldByAnotherVmIsRefusedNamingThatVm()
    {
        using var otherFolder = new TempDirectory();
        Host.PrepareForStart(With(Gpu) with { Name = "vm0" }, otherFolder.Path, []);
        _sysfs.Kernel.Writes.Clear();
        var others = PciPassthroughHost.ReadAssignments([("vm0", otherFolder.Path), ("vm9", "/nonexistent")]);

        Assert.Equal([new PciAssignment("vm0", PciAddress.Parse(Gpu))], others);
        var e = Assert.Throws<PciPassthroughException>(() => Host.PrepareForStart(With(Nic, Sibling, Gpu), _vm.Path, others));
        Assert.Contains($"PCI device {Gpu}", e.Message);
        Assert.Contains("already assigned to VM 'vm0'", e.Message);
        Assert.Empty(_sysfs.Kernel.Writes);
    }

    [Fact]
    public void ADeviceWithoutAnIommuGroupIsRefused()
    {
        _sysfs.AddDevice("0000:06:00.0", "xhci_hcd", iommuGroup: null, classCode: 0x0c0330);

        var e = Assert.Throws<PciPassthroughException>(() => Host.PrepareForStart(With("0000:06:00.0"), _vm.Path, []));

        Assert.Contains("no IOMMU group", e.Message);
        Assert.Empty(_sysfs.Kernel.Writes);
    }

    [Fact]
    public void WhenTheSecondBindFailsTheFirstIsGivenBack()
    {
        _sysfs.Kernel.FailWhen = (path, value) => path == $"bus/pci/devices/{Gpu}/driver_override" && value == "vfio-pci";

        var e = Assert.Throws<PciBindingException>(() => Host.PrepareForStart(With(Nic, Sibling, Gpu), _vm.Path, []));

        Assert.Equal(PciAddress.Parse(Gpu), e.Address);
        Assert.Equal("e1000e", _sysfs.DriverOf(Nic));
        Assert.Equal("e1000e", _sysfs.DriverOf(Sibling));
        Assert.Equal("amdgpu", _sysfs.DriverOf(Gpu));
        Assert.False(File.Exists(PciPassthroughHost.StatePath(_vm.Path)));
    }

    [Fact]
    public void ACrashMidBindIsRepairedByRelease()
    {
        // The record is written, the override set and the old driver unbound; then the process died before the probe.
        File.WriteAllLines(PciPassthroughHost.StatePath(_vm.Path), [$"{Nic} e1000e", $"{Gpu} amdgpu"]);
        _sysfs.Kernel.Write(Path.Combine(_sysfs.DeviceDirectory(Nic), "driver_override"), "vfio-pci");
        _sysfs.Kernel.Write(Path.Combine(_sysfs.DeviceDirectory(Nic), "driver", "unbind"), Nic);
        Assert.Null(_sysfs.DriverOf(Nic));

        Host.ReleaseAfterStop(_vm.Path);

        Assert.Equal("e1000e", _sysfs.DriverOf(Nic));
        Assert.Equal("(null)", _sysfs.Override(Nic));
        Assert.Equal("amdgpu", _sysfs.DriverOf(Gpu)); // never moved: left as it was
        Assert.False(File.Exists(PciPassthroughHost.StatePath(_vm.Path)));
    }

    [Fact]
    public void AFailedReturnKeepsItsRecordForTheNextRelease()
    {
        Host.PrepareForStart(With(Nic, Sibling, Gpu), _vm.Path, []);
        _sysfs.Kernel.FailWhen = (path, _) => path == $"bus/pci/devices/{Gpu}/driver/unbind";

        var e = Assert.Throws<PciBindingException>(() => Host.ReleaseAfterStop(_vm.Path));

        Assert.Equal(PciAddress.Parse(Gpu), e.Address);
        Assert.Equal("e1000e", _sysfs.DriverOf(Nic));
        Assert.Equal([$"{Gpu} amdgpu"], File.ReadAllLines(PciPassthroughHost.StatePath(_vm.Path)));
        _sysfs.Kernel.FailWhen = null;
        Host.ReleaseAfterStop(_vm.Path);
        Assert.Equal("amdgpu", _sysfs.DriverOf(Gpu));
    }

    [Fact]
    public void ThroughTheStoreAnotherVmsRecordBlocksItsDevices()
    {
        var store = KvmPS.Management.Store.VmStore.Open(Path.Combine(_vm.Path, "store"));
        store.Create(With(Gpu) with { Name = "vm0" });
        store.Create(With(Gpu, Nic, Sibling));

        Assert.Single(Host.PrepareForStart(store, store.Get("vm0")));
        var e = Assert.Throws<PciPassthroughException>(() => Host.PrepareForStart(store, store.Get("vm1")));
        Assert.Contains("already assigned to VM 'vm0'", e.Message);

        Host.ReleaseAfterStop(store, "vm0");
        Assert.Equal(3, Host.PrepareForStart(store, store.Get("vm1")).Count);
        Assert.True(File.Exists(PciPassthroughHost.StatePath(store.VmDirectory("vm1"))));
        Host.ReleaseAfterStop(store, "vm1");
        Assert.Equal("amdgpu", _sysfs.DriverOf(Gpu));
    }

    [Fact]
    public void AVmWithoutPassthroughChangesNothing()
    {
        Assert.Empty(Host.PrepareForStart(With(), _vm.Path, []));
        Assert.False(File.Exists(PciPassthroughHost.StatePath(_vm.Path)));
        Assert.Empty(_sysfs.Kernel.Writes);
    }
}
