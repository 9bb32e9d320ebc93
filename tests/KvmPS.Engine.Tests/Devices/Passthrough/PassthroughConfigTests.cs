using KvmPS.Devices.Config;
using KvmPS.Devices.Passthrough;
using KvmPS.Vmm;
using Xunit;

namespace KvmPS.Engine.Tests.Devices.Passthrough;

public class PassthroughConfigTests
{
    [Fact]
    public void VfioUserFlagParsesTheSocket()
    {
        var config = Assert.IsType<VfioUserDeviceConfig>(DeviceConfig.FromOptions(DeviceOptions.FromFlag("vfio-user,socket=/run/dev.sock")));
        Assert.Equal("/run/dev.sock", config.SocketPath);
    }

    [Theory]
    [InlineData("vfio-user", "needs 'socket'")]
    [InlineData("vfio-user,socket=/x,color=red", "unknown key")]
    [InlineData("vfio,host=3:0.0", "not a PCI address")]
    [InlineData("vfio", "needs 'host'")]
    public void BadOptionsAreRefusedByName(string flag, string expected)
    {
        var e = Assert.Throws<DeviceConfigException>(() => DeviceConfig.FromOptions(DeviceOptions.FromFlag(flag)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void VfioFlagAcceptsAShortAddressInDomainZero()
    {
        var config = Assert.IsType<VfioDeviceConfig>(DeviceConfig.FromOptions(DeviceOptions.FromFlag("vfio,host=03:00.0")));
        Assert.Equal("0000:03:00.0", config.HostAddress);
    }

    [Fact]
    public void AVmWithAVfioUserDeviceGetsMemfdRamAndDescribesTheDevice()
    {
        var config = VmmConfig.FromArgs(["--kernel", "/dev/null", "--device", "vfio-user,socket=/run/a.sock", "--device", "vfio,host=0000:03:00.0"]);
        Assert.True(config.Machine.Memory.Memfd);
        var devices = config.Configuration.Devices!;
        Assert.Equal("/run/a.sock", Assert.IsType<KvmPS.Contract.VfioUserDeviceSpec>(devices[0]).Socket);
        Assert.Equal("0000:03:00.0", Assert.IsType<KvmPS.Contract.VfioDeviceSpec>(devices[1]).Host);
    }

    [Fact]
    public void KernelVfioWithoutTheDeviceNamesIt()
    {
        var e = Assert.Throws<PassthroughException>(() => KernelVfioTransport.Open("0000:7f:1f.7"));
        Assert.Contains("0000:7f:1f.7", e.Message);
    }
}
