using KvmPS.Devices;
using KvmPS.Devices.Legacy;
using KvmPS.Devices.Pci;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Vsock;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices.State;

public sealed class DeviceSetTests : IDisposable
{
    private readonly GuestMemory _mem = GuestMemory.Create(16UL << 20);
    private readonly TempDir _dir = new();
    public void Dispose() { _mem.Dispose(); _dir.Dispose(); }

    [Fact]
    public void TwoPartsWithOneRecordNameAreRefused()
    {
        var set = new DeviceSet([new CmosRtc(1 << 20), new CmosRtc(1 << 20)], null, null);
        Assert.Contains("cmos-rtc", Assert.Throws<InvalidOperationException>(() => set.PersistentParts()).Message);
    }

    [Fact]
    public void PausedVsockRunsNoHostKicks()
    {
        var vsock = new VirtioVsock(_mem, 3, _dir.File("v.sock"));
        var bus = new PciBus(new MmioBus(), VirtioPciTransportTests.TestWindows, _ => new FakeLine());
        var t = new VirtioPciTransport(vsock, _mem);
        bus.AddDevice(3, t);
        var drv = new TestDriver(t);
        drv.Negotiate(VirtioVsock.FeatureStream);
        drv.SetupQueue(0, new TestRing(_mem, 8, 0x10000));
        drv.SetupQueue(1, new TestRing(_mem, 8, 0x20000));
        drv.SetupQueue(2, new TestRing(_mem, 8, 0x30000));
        drv.DriverOk();
        var set = new DeviceSet([], bus, null);
        set.PauseAll();
        long runs = vsock.Host.DeliveryRuns;
        vsock.Kick(); // a host socket has data for the guest
        Thread.Sleep(100);
        Assert.Equal(runs, vsock.Host.DeliveryRuns);
        set.ResumeAll();
        Assert.True(SpinWait.SpinUntil(() => vsock.Host.DeliveryRuns > runs, TimeSpan.FromSeconds(5)));
        bus.Dispose();
    }
}
