using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;

namespace KvmPS.Management.Tests.HostDevices;

public sealed class HostSriovTests : IDisposable
{
    private const string Pf = "0000:03:00.0", Plain = "0000:00:1f.0";
    private readonly FakeSysfs _sysfs = new();

    public HostSriovTests()
    {
        _sysfs.AddDriver("vfio-pci");
        _sysfs.AddDevice(Pf, "ixgbe", iommuGroup: 7, totalVfs: 8);
        _sysfs.AddDevice(Plain, "lpc_ich", iommuGroup: 3, classCode: 0x060100);
        _sysfs.AddNetworkInterface(Pf, "enp3s0f0", "up");
    }

    public void Dispose() => _sysfs.Dispose();

    private HostSriov Sriov => new(_sysfs.Host, _sysfs.Kernel);
    private static PciAddress A(string text) => PciAddress.Parse(text);

    [Fact]
    public void EnablingVfsShowsThemWithTheirParent()
    {
        Assert.True(Sriov.SetVfCount(A(Pf), 4));

        var devices = _sysfs.Host.List();
        var pf = devices.Single(d => d.Address == A(Pf));
        Assert.Equal((4, 8), (pf.SriovNumVfs, pf.SriovTotalVfs));
        var vfs = devices.Where(d => d.PhysicalFunction == A(Pf)).ToList();
        Assert.Equal(4, vfs.Count);
        Assert.All(vfs, vf => Assert.True(vf.IsVirtualFunction));
        Assert.Equal(vfs.Select(v => v.Address), Sriov.VirtualFunctions(A(Pf)).Select(v => v.Address));
        Assert.Equal(new SriovVirtualFunction(A(Pf), 2, vfs[2].Address), Sriov.FindVirtualFunction(vfs[2].Address));
        Assert.Equal("enp3s0f0", Sriov.NetworkInterface(A(Pf)));
        Assert.Equal([($"bus/pci/devices/{Pf}/sriov_numvfs", "4")], _sysfs.Kernel.Writes);
    }

    [Fact]
    public void ChangingANonZeroCountGoesThroughZero()
    {
        Sriov.SetVfCount(A(Pf), 4);
        _sysfs.Kernel.Writes.Clear();

        Assert.True(Sriov.SetVfCount(A(Pf), 2));

        Assert.Equal([($"bus/pci/devices/{Pf}/sriov_numvfs", "0"), ($"bus/pci/devices/{Pf}/sriov_numvfs", "2")], _sysfs.Kernel.Writes);
        Assert.Equal(2, _sysfs.Host.TryRead(A(Pf))!.SriovNumVfs);
        Assert.Equal(2, Sriov.VirtualFunctions(A(Pf)).Count);
    }

    [Fact]
    public void TheSameCountWritesNothing()
    {
        Sriov.SetVfCount(A(Pf), 3);
        _sysfs.Kernel.Writes.Clear();
        Assert.False(Sriov.SetVfCount(A(Pf), 3));
        Assert.Empty(_sysfs.Kernel.Writes);
    }

    [Fact]
    public void MoreThanTotalVfsIsRefusedNamingBoth()
    {
        var e = Assert.Throws<HostSriovException>(() => Sriov.SetVfCount(A(Pf), 9));
        Assert.Contains(Pf, e.Message);
        Assert.Contains("asks for 9 virtual functions but it supports at most 8", e.Message);
        Assert.Empty(_sysfs.Kernel.Writes);
    }

    [Fact]
    public void ANonSriovDeviceAMissingOneAndAVfAreRefused()
    {
        Assert.Contains("not SR-IOV capable", Assert.Throws<HostSriovException>(() => Sriov.SetVfCount(A(Plain), 1)).Message);
        Assert.Contains("no such device", Assert.Throws<HostSriovException>(() => Sriov.SetVfCount(A("0000:0a:00.0"), 1)).Message);
        Sriov.SetVfCount(A(Pf), 1);
        var vf = Sriov.VirtualFunctions(A(Pf))[0].Address;
        Assert.Contains($"virtual function of {Pf}", Assert.Throws<HostSriovException>(() => Sriov.SetVfCount(vf, 1)).Message);
        Assert.Contains("is negative", Assert.Throws<HostSriovException>(() => Sriov.SetVfCount(A(Pf), -1)).Message);
    }

    [Fact]
    public void AVfPassedToAVmBlocksAChange()
    {
        Sriov.SetVfCount(A(Pf), 2);
        var vf = Sriov.VirtualFunctions(A(Pf))[1].Address;
        new PciDriverBinding(_sysfs.Host, _sysfs.Kernel).Bind(vf);
        _sysfs.Kernel.Writes.Clear();

        var e = Assert.Throws<HostSriovException>(() => Sriov.SetVfCount(A(Pf), 0));

        Assert.Contains($"virtual function {vf} (VF 1) is bound to vfio-pci", e.Message);
        Assert.Empty(_sysfs.Kernel.Writes);
    }

    [Fact]
    public void AKernelRefusalNamesTheDeviceAndTheFile()
    {
        _sysfs.Kernel.FailWhen = (path, _) => path.EndsWith("sriov_numvfs", StringComparison.Ordinal);
        var e = Assert.Throws<HostSriovException>(() => Sriov.SetVfCount(A(Pf), 2));
        Assert.Contains($"writing 2 to {_sysfs.DeviceDirectory(Pf)}/sriov_numvfs failed: No such device", e.Message);
    }
}
