using System.Buffers.Binary;
using KvmPS.Devices.Passthrough;
using KvmPS.Devices.Pci;
using KvmPS.Interop;
using KvmPS.Vm;
using Xunit;

namespace KvmPS.Engine.Tests.Devices.Passthrough;

/// <summary>Routes that record irqfd binds; KVM "refuses" (not ready) any message outside the interrupt range 0xFEExxxxx.</summary>
internal sealed class FakeIrqfdMsi : IMsiController
{
    public readonly List<Route> Routes = [];
    public readonly List<(ulong Address, uint Data)> Fired = [];
    public IMsiRoute CreateRoute() { var r = new Route(this); Routes.Add(r); return r; }

    internal sealed class Route(FakeIrqfdMsi owner) : IIrqfdRoute
    {
        private (ulong Address, uint Data) _msg;
        public readonly List<EventFdHandle> Bound = [];
        public bool Disposed;
        public bool Ready => !Disposed && (_msg.Address >> 20) == 0xFEE;
        public void Configure(ulong address, uint data) => _msg = (address, data);
        public void Fire() { if (Ready) owner.Fired.Add(_msg); }
        public void Bind(EventFdHandle fd) { if (!Bound.Contains(fd)) Bound.Add(fd); }
        public void Unbind(EventFdHandle fd) => Bound.Remove(fd);
        public void Dispose() => Disposed = true;
    }
}

/// <summary>An I/O loop stand-in: which eventfds are watched now, and their callbacks.</summary>
internal sealed class FakeWatcher
{
    public readonly Dictionary<EventFdHandle, Action> Watched = [];
    public int Registrations;

    public IDisposable Watch(EventFdHandle fd, Action callback)
    {
        Assert.False(Watched.ContainsKey(fd), "an eventfd is watched twice");
        Watched[fd] = callback;
        Registrations++;
        return new Registration(this, fd);
    }

    private sealed class Registration(FakeWatcher owner, EventFdHandle fd) : IDisposable
    {
        public void Dispose() => owner.Watched.Remove(fd);
    }
}

/// <summary>MSI-X vectors of a passthrough function: bound to KVM as irqfds while deliverable, relayed while not.</summary>
public sealed class PassthroughIrqfdTests : IDisposable
{
    private readonly FakeTransport _transport = new();
    private readonly FakeIrqfdMsi _msi = new();
    private readonly FakeWatcher _watcher = new();
    private readonly MmioBus _mmio = new();
    private readonly List<string> _log = [];
    private readonly PciBus _bus;
    private readonly PassthroughDevice _device;
    private readonly ulong _table, _pba;

    public PassthroughIrqfdTests()
    {
        _bus = new PciBus(_mmio, VirtioPciTransportTests.TestWindows, null, _log.Add);
        _device = PassthroughDevice.Create(_transport, null, new PassthroughHost(_msi, _watcher.Watch, null), _log.Add);
        _bus.AddDevice(3, _device);
        _table = _device.Bar(0)!.MappedAt!.Value + 0x800;
        _pba = _device.Bar(0)!.MappedAt!.Value + 0x900;
    }

    public void Dispose() => _device.Dispose();

    private void MmioWrite32(ulong address, uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); Assert.True(_mmio.Write(address, b)); }
    private uint Mmio32(ulong address) { Span<byte> b = stackalloc byte[4]; Assert.True(_mmio.Read(address, b)); return BinaryPrimitives.ReadUInt32LittleEndian(b); }
    private void Control(ushort value) { Span<byte> b = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, value); _device.ConfigWrite(0x52, b); }

    private void Program(int vector, ulong address, uint data, bool masked)
    {
        ulong entry = _table + (ulong)vector * 16;
        MmioWrite32(entry, (uint)address);
        MmioWrite32(entry + 4, (uint)(address >> 32));
        MmioWrite32(entry + 8, data);
        MmioWrite32(entry + 12, masked ? 1u : 0u);
    }

    private EventFdHandle DeviceFd(int vector) => _transport.LastIrqFds[vector];
    private FakeIrqfdMsi.Route? BoundRoute(int vector) => _msi.Routes.SingleOrDefault(r => r.Bound.Contains(DeviceFd(vector)));

    [Fact]
    public void AnUnmaskedVectorWithARouteIsBoundAndMaskingHandsItBackToTheRelay()
    {
        Assert.Equal(4, _watcher.Watched.Count);                 // before MSI-X is on, every vector is relayed
        Program(1, 0xFEE0_0000, 0x41, masked: false);
        Program(2, 0xFEE0_0000, 0x42, masked: true);
        Control(0x8000);
        Assert.Equal(1, _device.DirectVectors);
        var route = BoundRoute(1);
        Assert.NotNull(route);
        Assert.DoesNotContain(DeviceFd(1), _watcher.Watched.Keys); // KVM reads it now, not the I/O thread
        Assert.Contains(DeviceFd(2), _watcher.Watched.Keys);

        Program(1, 0xFEE0_1000, 0x51, masked: false);            // reprogrammed: same route, new message, still bound
        Assert.Same(route, BoundRoute(1));
        Assert.Equal(1, _device.DirectVectors);

        MmioWrite32(_table + 16 + 12, 1);                        // masked: unbound, the relay latches its signals
        Assert.Null(BoundRoute(1));
        Assert.Contains(DeviceFd(1), _watcher.Watched.Keys);
        _watcher.Watched[DeviceFd(1)]();
        Assert.Equal(0x2u, Mmio32(_pba) & 0x2);
        Assert.Empty(_msi.Fired);
        MmioWrite32(_table + 16 + 12, 0);                        // unmasked: the pending one is delivered, then bound again
        Assert.Equal((0xFEE0_1000UL, 0x51u), Assert.Single(_msi.Fired));
        Assert.Same(route, BoundRoute(1));
        Assert.Equal(0u, Mmio32(_pba));
    }

    [Fact]
    public void FunctionMaskAndDisableUnbindEveryVector()
    {
        for (int v = 0; v < 4; v++) Program(v, 0xFEE0_0000, 0x40u + (uint)v, masked: false);
        Control(0x8000);
        Assert.Equal(4, _device.DirectVectors);
        Assert.Empty(_watcher.Watched);
        Control(0xC000);                                         // function mask
        Assert.Equal(0, _device.DirectVectors);
        Assert.Equal(4, _watcher.Watched.Count);
        Control(0x8000);
        Assert.Equal(4, _device.DirectVectors);
        Control(0);                                              // MSI-X off
        Assert.Equal(0, _device.DirectVectors);
        Assert.Equal(4, _watcher.Watched.Count);
        Assert.All(_msi.Routes, r => Assert.Empty(r.Bound));
    }

    [Fact]
    public void AVectorWhoseMessageKvmRefusesStaysRelayed()
    {
        Program(0, 0xDEAD_0000, 0xFFFF_FFFF, masked: false);    // garbage: the route is not ready
        Control(0x8000);
        Assert.Equal(0, _device.DirectVectors);
        Assert.Contains(DeviceFd(0), _watcher.Watched.Keys);
        _watcher.Watched[DeviceFd(0)]();                         // relayed, and delivers nothing
        Assert.Empty(_msi.Fired);
        Program(0, 0xFEE0_0000, 0x41, masked: false);            // a good message: bound
        Assert.Equal(1, _device.DirectVectors);
    }

    [Fact]
    public void DisposeUnbindsAndStopsTheRelay()
    {
        Program(3, 0xFEE0_0000, 0x43, masked: false);
        Control(0x8000);
        var route = BoundRoute(3)!;
        _device.Dispose();
        Assert.Empty(route.Bound);
        Assert.True(route.Disposed);
        Assert.Empty(_watcher.Watched);
    }
}

/// <summary>INTx of a passthrough function: a KVM level irqfd with resample on the pin's GSI, on while MSI-X is off.</summary>
public sealed class PassthroughIntxTests : IDisposable
{
    private readonly FakeTransport _transport = new();
    private readonly List<(uint Gsi, EventFdHandle Trigger, EventFdHandle Resample)> _binds = [];
    private int _unbinds;
    private readonly List<string> _log = [];
    private readonly PciBus _bus;
    private PassthroughDevice? _device;

    public PassthroughIntxTests() => _bus = new PciBus(new MmioBus(), VirtioPciTransportTests.TestWindows, null, _log.Add);

    public void Dispose() => _device?.Dispose();

    private sealed class Unbind(Action action) : IDisposable { public void Dispose() => action(); }

    private PassthroughDevice Plug(bool canBind = true)
    {
        _device = PassthroughDevice.Create(_transport, null, new PassthroughHost(new FakeIrqfdMsi(), null, null,
            canBind ? (gsi, trigger, resample) => { _binds.Add((gsi, trigger, resample)); return new Unbind(() => _unbinds++); } : null), _log.Add);
        _bus.AddDevice(3, _device);
        return _device;
    }

    private void Control(ushort value) { Span<byte> b = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, value); _device!.ConfigWrite(0x52, b); }

    [Fact]
    public void ThePinIsBoundAtItsGsiAndHandedToTheDevice()
    {
        _transport.Config[0x3D] = 1;
        var d = Plug();
        Assert.Equal(1, d.InterruptPin);
        uint gsi = PciBus.IntxGsi(3, 1);
        Assert.Equal(gsi, d.IntxGsi);
        var bind = Assert.Single(_binds);
        Assert.Equal(gsi, bind.Gsi);
        Assert.Same(bind.Trigger, _transport.IntxTrigger);       // the device signals what KVM listens to
        Assert.Same(bind.Resample, _transport.IntxUnmask);       // and KVM's resample (the guest's EOI) unmasks it
        Span<byte> line = stackalloc byte[1];
        d.ConfigRead(0x3C, line);
        Assert.Equal((byte)gsi, line[0]);                        // the interrupt line says where, as firmware would
        Assert.Contains(_log, l => l.Contains($"INTx pin A on GSI {gsi}"));

        _transport.IrqSets.Clear();
        Control(0x8000);                                         // MSI-X on: INTx off at the device first
        Assert.Equal([(0, 0), (2, 4)], _transport.IrqSets);
        Assert.Null(_transport.IntxTrigger);
        _transport.IrqSets.Clear();
        Control(0);                                              // MSI-X off: INTx back
        Assert.Equal([(2, 0), (0, 1), (0, -1)], _transport.IrqSets);
        Assert.Same(bind.Trigger, _transport.IntxTrigger);

        d.Dispose();
        Assert.Equal(1, _unbinds);
        Assert.Null(_transport.IntxTrigger);                     // disabled at the device before the eventfds go
    }

    [Fact]
    public void WithoutAPinOrAWayToBindItTheGuestSeesNoPin()
    {
        var d = Plug();                                          // the device reports no pin
        Assert.Equal(0, d.InterruptPin);
        Assert.Null(d.IntxGsi);
        Assert.Empty(_binds);
        d.Dispose();
        var other = new FakeTransport();
        other.Config[0x3D] = 2;
        var e = PassthroughDevice.Create(other, null, new PassthroughHost(null, null, null), _log.Add);
        Assert.Equal(0, e.InterruptPin);                         // a machine that cannot bind INTx hides the pin
        e.Dispose();
    }
}
