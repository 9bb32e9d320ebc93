using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;

namespace KvmPS.Management.Tests.HostDevices;

public sealed class PciDriverBindingTests : IDisposable
{
    private const string Nic = "0000:03:00.0", Other = "0000:03:00.1";
    private readonly FakeSysfs _sysfs = new();

    public PciDriverBindingTests()
    {
        _sysfs.AddDriver("vfio-pci");
        _sysfs.AddDevice(Nic, "e1000e", iommuGroup: 7);
    }

    public void Dispose() => _sysfs.Dispose();

    private PciDriverBinding Binding => new(_sysfs.Host, _sysfs.Kernel);

    [Fact]
    public void BindMovesTheFunctionToVfioPciAndReturnGivesItBack()
    {
        var record = Binding.Bind(PciAddress.Parse(Nic));

        Assert.Equal(new PciBindingRecord(PciAddress.Parse(Nic), "e1000e"), record);
        Assert.Equal("vfio-pci", _sysfs.DriverOf(Nic));
        Assert.Equal("vfio-pci", _sysfs.Override(Nic));
        Assert.Equal(
            [($"bus/pci/devices/{Nic}/driver_override", "vfio-pci"), ($"bus/pci/devices/{Nic}/driver/unbind", Nic), ("bus/pci/drivers_probe", Nic)],
            _sysfs.Kernel.Writes);

        _sysfs.Kernel.Writes.Clear();
        Binding.Return(record);

        Assert.Equal("e1000e", _sysfs.DriverOf(Nic));
        Assert.Equal("(null)", _sysfs.Override(Nic));
        Assert.Equal(
            [($"bus/pci/devices/{Nic}/driver/unbind", Nic), ($"bus/pci/devices/{Nic}/driver_override", "\n"), ("bus/pci/drivers_probe", Nic)],
            _sysfs.Kernel.Writes);
    }

    [Fact]
    public void WithoutTheVfioModuleTheBindFailsNamingTheDeviceAndIsRolledBack()
    {
        Directory.Delete(Path.Combine(_sysfs.Drivers, "vfio-pci"), recursive: true);

        var e = Assert.Throws<PciBindingException>(() => Binding.Bind(PciAddress.Parse(Nic)));

        Assert.Equal(PciAddress.Parse(Nic), e.Address);
        Assert.Contains(Nic, e.Message);
        Assert.Contains("bound to no driver, not vfio-pci", e.Message);
        Assert.Contains("modprobe vfio-pci", e.Message);
        Assert.Equal("e1000e", _sysfs.DriverOf(Nic));
        Assert.Equal("(null)", _sysfs.Override(Nic));
    }

    [Fact]
    public void AKernelRefusalIsRolledBackAndNamesTheFileWritten()
    {
        _sysfs.Kernel.FailWhen = (path, _) => path == "bus/pci/drivers_probe" && _sysfs.Override(Nic) == "vfio-pci";

        var e = Assert.Throws<PciBindingException>(() => Binding.Bind(PciAddress.Parse(Nic)));

        Assert.Contains("drivers_probe failed: No such device", e.Message);
        Assert.Equal("e1000e", _sysfs.DriverOf(Nic));
        Assert.Equal("(null)", _sysfs.Override(Nic));
    }

    [Fact]
    public void ADeviceThatDoesNotExistIsRefusedWithoutAWrite()
    {
        var e = Assert.Throws<PciPassthroughException>(() => Binding.Bind(PciAddress.Parse("0000:09:00.0")));

        Assert.Contains("0000:09:00.0", e.Message);
        Assert.Contains("no such device", e.Message);
        Assert.Empty(_sysfs.Kernel.Writes);
    }

    [Theory]
    [InlineData("up", true)]
    [InlineData("down", false)]
    public void ANetworkInterfaceThatIsUpIsRefusedWithoutAWrite(string operstate, bool refused)
    {
        _sysfs.AddNetworkInterface(Nic, "enp3s0", operstate);

        if (!refused)
        {
            Binding.Bind(PciAddress.Parse(Nic));
            Assert.Equal("vfio-pci", _sysfs.DriverOf(Nic));
            return;
        }
        var e = Assert.Throws<PciPassthroughException>(() => Binding.Bind(PciAddress.Parse(Nic)));
        Assert.Contains(Nic, e.Message);
        Assert.Contains("network interface enp3s0 (driver e1000e) is up", e.Message);
        Assert.Empty(_sysfs.Kernel.Writes);
        Assert.Equal("e1000e", _sysfs.DriverOf(Nic));
    }

    [Fact]
    public void ABlockDeviceWithAHolderIsRefused()
    {
        var nvme = "0000:05:00.0";
        _sysfs.AddDevice(nvme, "nvme", iommuGroup: 9, classCode: 0x010802);
        Directory.CreateDirectory(Path.Combine(_sysfs.DeviceDirectory(nvme), "nvme", "nvme0", "nvme0n1", "holders", "dm-0"));

        var e = Assert.Throws<PciPassthroughException>(() => Binding.Bind(PciAddress.Parse(nvme)));

        Assert.Contains("block device nvme0n1 (driver nvme) holds dm-0", e.Message);
        Assert.Empty(_sysfs.Kernel.Writes);
    }

    [Fact]
    public void ADriverlessFunctionIsBoundAndLeftDriverlessOnReturn()
    {
        _sysfs.AddDevice(Other, null, iommuGroup: 8);
        _sysfs.Kernel.NativeDriver[Other] = "e1000e"; // the probe would pick it, but the function had no driver

        var record = Binding.Bind(PciAddress.Parse(Other));
        Assert.Null(record.OriginalDriver);
        Assert.Equal("vfio-pci", _sysfs.DriverOf(Other));

        Binding.Return(record);
        Assert.Null(_sysfs.DriverOf(Other));
        Assert.Equal("(null)", _sysfs.Override(Other));
    }

    [Fact]
    public void AFunctionAlreadyOnVfioPciIsLeftThere()
    {
        Binding.Bind(PciAddress.Parse(Nic));
        _sysfs.Kernel.Writes.Clear();

        var record = Binding.Bind(PciAddress.Parse(Nic));
        Binding.Return(record);

        Assert.Equal("vfio-pci", record.OriginalDriver);
        Assert.Equal("vfio-pci", _sysfs.DriverOf(Nic));
        Assert.Empty(_sysfs.Kernel.Writes);
    }

    [Fact]
    public void ReturnWhenTheOriginalDriverDoesNotTakeItSaysSo()
    {
        var record = Binding.Bind(PciAddress.Parse(Nic));
        Directory.Delete(Path.Combine(_sysfs.Drivers, "e1000e"), recursive: true); // module unloaded meanwhile

        var e = Assert.Throws<PciBindingException>(() => Binding.Return(record));

        Assert.Contains($"PCI device {Nic}", e.Message);
        Assert.Contains("bound to no driver, not its original driver e1000e", e.Message);
    }
}
