using System.Buffers.Binary;
using KvmPS.Devices;
using KvmPS.Devices.Pci;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Rng;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices;

internal sealed class FakeLine : IInterruptLine
{
    public bool Level;
    public int Pulses;
    public void Trigger() => Pulses++;
    public void SetLevel(bool asserted) => Level = asserted;
}

internal sealed class FakeMsi : IMsiController
{
    public readonly List<(ulong Address, uint Data)> Fired = new();
    public int Routes;
    public IMsiRoute CreateRoute() { Routes++; return new Route(this); }
    private sealed class Route(FakeMsi owner) : IMsiRoute
    {
        private (ulong, uint) _msg;
        public void Configure(ulong address, uint data) => _msg = (address, data);
        public void Fire() => owner.Fired.Add(_msg);
        public void Dispose() { }
    }
}

public sealed class VirtioPciTransportTests : IDisposable
{
    private readonly GuestMemory _mem = GuestMemory.Create(16UL << 20);
    public void Dispose() => _mem.Dispose();

    private static uint Cfg32(PciDevice d, int offset) { Span<byte> b = stackalloc byte[4]; d.ConfigRead(offset, b); return BinaryPrimitives.ReadUInt32LittleEndian(b); }
    private static void CfgWrite16(PciDevice d, int offset, ushort v) { Span<byte> b = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); d.ConfigWrite(offset, b); }
    private static void CfgWrite32(PciDevice d, int offset, uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); d.ConfigWrite(offset, b); }

    [Fact]
    public void PresentsModernVirtioIdentityAndCapabilities()
    {
        using var t = new VirtioPciTransport(new VirtioRng(), _mem);
        Assert.Equal(0x1044_1AF4u, Cfg32(t, 0));
        Assert.Equal(0x00FF0001u, Cfg32(t, 8));            // class 00 ff 00, revision 1
        Assert.Equal(0x1100_1AF4u, Cfg32(t, 0x2C));        // subsystem
        Assert.Equal(1, (int)(Cfg32(t, 0x3C) >> 8 & 0xFF)); // INTA
        Assert.NotEqual(0u, Cfg32(t, 4) >> 16 & PciDevice.StatusCapList);

        var virtioTypes = new List<byte>();
        bool msix = false;
        int notifyMultiplier = 0;
        for (int p = (int)(Cfg32(t, 0x34) & 0xFF), guard = 0; p != 0 && guard < 32; guard++)
        {
            uint head = Cfg32(t, p);
            byte id = (byte)head;
            if (id == PciDevice.CapIdMsiX)
            {
                msix = true;
                Assert.Equal(1, (int)(head >> 16 & 0x7FF)); // table size 2 - 1: one queue + config
                Assert.Equal((uint)VirtioPciTransport.MsixTableOffset, Cfg32(t, p + 4));
                Assert.Equal((uint)VirtioPciTransport.MsixPbaOffset, Cfg32(t, p + 8));
            }
            if (id == PciDevice.CapIdVendor)
            {
                byte type = (byte)(head >> 24);
                virtioTypes.Add(type);
                if (type == VirtioPciTransport.CapNotify) notifyMultiplier = (int)Cfg32(t, p + 16);
            }
            p = (int)(head >> 8 & 0xFF);
        }
        Assert.True(msix);
        Assert.Equal([VirtioPciTransport.CapCommon, VirtioPciTransport.CapNotify, VirtioPciTransport.CapIsr, VirtioPciTransport.CapPciCfg], virtioTypes);
        Assert.Equal(4, notifyMultiplier);
        var drv = new TestDriver(t);
        ulong f = drv.DeviceFeatures();
        Assert.Equal(VirtioFeatures.Version1 | VirtioFeatures.RingEventIdx | VirtioFeatures.RingIndirectDesc, f);
        Assert.Equal(1UL, drv.Read(0x12, 2)); // num_queues
    }

    [Fact]
    public void FeatureNegotiationRequiresVersion1AndOfferedBitsOnly()
    {
        var errors = new List<string>();
        using var t = new VirtioPciTransport(new VirtioRng(), _mem) { ErrorLog = errors.Add };
        var drv = new TestDriver(t);
        Assert.False(drv.Negotiate(0, version1: false));
        Assert.False(drv.Negotiate(1UL << 40));
        Assert.Equal(2, errors.Count);
        Assert.True(drv.Negotiate(VirtioFeatures.RingEventIdx));
        Assert.Equal(VirtioFeatures.Version1 | VirtioFeatures.RingEventIdx, t.NegotiatedFeatures);
        // Once FEATURES_OK is set, the driver features are frozen.
        drv.Write(0x08, 4, 0);
        drv.Write(0x0C, 4, 0);
        Assert.Equal(VirtioFeatures.Version1 | VirtioFeatures.RingEventIdx, t.NegotiatedFeatures);
        drv.WriteStatus(0);
        Assert.Equal(0, drv.Status);
        Assert.Equal(0UL, t.NegotiatedFeatures);
    }

    [Fact]
    public void ServesRandomBytesThroughASynchronousNotify()
    {
        using var t = new VirtioPciTransport(new VirtioRng(), _mem);
        var drv = new TestDriver(t);
        Assert.True(drv.Negotiate(0));
        var ring = new TestRing(_mem, 8, 0x1000);
        drv.SetupQueue(0, ring);
        drv.DriverOk();
        Assert.Equal(1UL, drv.Read(0x1C, 2)); // queue_enable reads back
        ring.SetDesc(0, 0x20000, 16, VirtQueue.DescFlagNext | VirtQueue.DescFlagWrite, 1);
        ring.SetDesc(1, 0x30000, 48, VirtQueue.DescFlagWrite);
        _mem.Fill(0x20000, 16, 0);
        _mem.Fill(0x30000, 48, 0);
        ring.Offer(0);
        drv.Notify(0);
        Assert.Equal(1, ring.UsedIdx);
        Assert.Equal((0u, 64u), ring.UsedElem(0));
        Assert.False(_mem.GetReadOnlySpan(0x30000, 48).ToArray().All(b => b == 0));
        Assert.Equal(1UL, drv.Read(VirtioPciTransport.IsrOffset, 1)); // queue interrupt (INTx mode)
        Assert.Equal(0UL, drv.Read(VirtioPciTransport.IsrOffset, 1)); // read-to-clear
    }

    [Fact]
    public void BadQueueAddressSetsNeedsResetAndResetRecovers()
    {
        var errors = new List<string>();
        using var t = new VirtioPciTransport(new VirtioRng(), _mem) { ErrorLog = errors.Add };
        var drv = new TestDriver(t);
        Assert.True(drv.Negotiate(0));
        drv.SetupQueue(0, new TestRing(_mem, 8, 0xFFFF_0000)); // outside RAM
        Assert.Equal(0UL, drv.Read(0x1C, 2));
        Assert.NotEqual(0, drv.Status & VirtioStatus.NeedsReset);
        Assert.Contains(errors, e => e.Contains("outside guest RAM"));
        drv.DriverOk();
        Assert.NotEqual(0, drv.Status & VirtioStatus.NeedsReset); // sticky until reset
        Assert.True(drv.Negotiate(0));                            // Negotiate starts with a reset
        Assert.Equal(0, drv.Status & VirtioStatus.NeedsReset);
        drv.SetupQueue(0, new TestRing(_mem, 8, 0x1000));
        Assert.Equal(1UL, drv.Read(0x1C, 2));
    }

    [Fact]
    public void MalformedChainSetsNeedsResetRaisesConfigInterruptAndStopsTheQueue()
    {
        var errors = new List<string>();
        var bus = new PciBus(new MmioBus(), TestWindows, _ => new FakeLine());
        var t = new VirtioPciTransport(new VirtioRng(), _mem) { ErrorLog = errors.Add };
        bus.AddDevice(3, t);
        var drv = new TestDriver(t);
        Assert.True(drv.Negotiate(0));
        var ring = new TestRing(_mem, 4, 0x1000);
        drv.SetupQueue(0, ring);
        drv.DriverOk();
        ring.SetDesc(0, 0x20000, 8, VirtQueue.DescFlagNext | VirtQueue.DescFlagWrite, 0); // loops on itself
        ring.Offer(0);
        drv.Notify(0);
        Assert.Equal(VirtioStatus.NeedsReset, drv.Status & VirtioStatus.NeedsReset);
        Assert.Single(errors);
        Assert.Equal(0, ring.UsedIdx);
        Assert.Equal(2UL, drv.Read(VirtioPciTransport.IsrOffset, 1)); // configuration change
        ring.SetDesc(0, 0x20000, 8, VirtQueue.DescFlagWrite);
        ring.Offer(0);
        drv.Notify(0);
        Assert.Equal(0, ring.UsedIdx); // nothing processed until reset
        Assert.Single(errors);
        bus.Dispose();
    }

    internal static readonly PciWindows TestWindows = new(0xC000_0000, 0x2000_0000, 0x10_0000_0000, 1UL << 32, 0xE000_0000, 0x10_0000);

    [Fact]
    public void IntxFollowsIsrAndTheCommandRegister()
    {
        var lines = new Dictionary<uint, FakeLine>();
        var bus = new PciBus(new MmioBus(), TestWindows, gsi => lines[gsi] = new FakeLine());
        var t = new VirtioPciTransport(new VirtioRng(), _mem);
        bus.AddDevice(2, t);
        uint gsi = PciBus.IntxGsi(2, 1);
        Assert.Equal(18u, gsi);
        Assert.Equal((byte)gsi, (byte)Cfg32(t, 0x3C));
        var drv = new TestDriver(t);
        drv.Negotiate(0);
        var ring = new TestRing(_mem, 4, 0x1000);
        drv.SetupQueue(0, ring);
        drv.DriverOk();
        ring.SetDesc(0, 0x20000, 4, VirtQueue.DescFlagWrite);
        ring.Offer(0);
        drv.Notify(0);
        Assert.True(lines[gsi].Level);
        Assert.NotEqual(0u, Cfg32(t, 4) >> 16 & PciDevice.StatusInterrupt);
        CfgWrite16(t, 4, (ushort)(t.Command | PciDevice.CommandIntxDisable));
        Assert.False(lines[gsi].Level);  // masked by INTx disable
        CfgWrite16(t, 4, (ushort)(t.Command & ~PciDevice.CommandIntxDisable));
        Assert.True(lines[gsi].Level);
        drv.Read(VirtioPciTransport.IsrOffset, 1);
        Assert.False(lines[gsi].Level);
        bus.Dispose();
    }

    [Fact]
    public void MsiXDeliversQueueInterruptsAndLatchesWhileMasked()
    {
        var msi = new FakeMsi();
        var line = new FakeLine();
        var bus = new PciBus(new MmioBus(), TestWindows, _ => line);
        var t = new VirtioPciTransport(new VirtioRng(), _mem, msi);
        bus.AddDevice(1, t);
        var drv = new TestDriver(t);

        // Find the MSI-X capability and enable MSI-X with the function masked.
        int cap = (int)(Cfg32(t, 0x34) & 0xFF);
        while ((byte)Cfg32(t, cap) != PciDevice.CapIdMsiX) cap = (int)(Cfg32(t, cap) >> 8 & 0xFF);
        CfgWrite16(t, cap + 2, 0xC000);
        Assert.True(t.MsiX.Enabled && t.MsiX.FunctionMasked);
        // Vector 1: address/data, unmasked.
        ulong entry = VirtioPciTransport.MsixTableOffset + 16;
        Assert.Equal(1UL, drv.Read(entry + 12, 4)); // masked at reset
        drv.Write(entry, 4, 0xFEE0_0000);
        drv.Write(entry + 4, 4, 0);
        drv.Write(entry + 8, 4, 0x41);
        drv.Write(entry + 12, 4, 0);

        drv.Negotiate(VirtioFeatures.RingEventIdx);
        var ring = new TestRing(_mem, 4, 0x1000);
        drv.SetupQueue(0, ring, msixVector: 1);
        Assert.Equal(1UL, drv.Read(0x1A, 2));
        drv.Write(0x1A, 2, 7);                       // vector beyond the table: NO_VECTOR
        Assert.Equal(0xFFFFUL, drv.Read(0x1A, 2));
        drv.Write(0x16, 2, 0);
        drv.DriverOk();
        ring.SetDesc(0, 0x20000, 4, VirtQueue.DescFlagWrite);
        ring.Offer(0);
        drv.Notify(0);
        Assert.Empty(msi.Fired); // the queue has NO_VECTOR: nothing
        Assert.False(line.Level);  // and no INTx while MSI-X is on

        // Re-setup with vector 1 while the function is masked: the interrupt is latched in the PBA.
        Assert.True(drv.Negotiate(VirtioFeatures.RingEventIdx));
        ring = new TestRing(_mem, 4, 0x1000);
        drv.SetupQueue(0, ring, msixVector: 1);
        drv.DriverOk();
        ring.SetDesc(0, 0x20000, 4, VirtQueue.DescFlagWrite);
        ring.Offer(0);
        drv.Notify(0);
        Assert.Empty(msi.Fired);
        Assert.Equal(2UL, drv.Read(VirtioPciTransport.MsixPbaOffset, 8)); // bit 1 pending
        CfgWrite16(t, cap + 2, 0x8000); // unmask the function: the pending vector goes out
        Assert.Equal([(0xFEE0_0000UL, 0x41u)], msi.Fired);
        Assert.Equal(0UL, drv.Read(VirtioPciTransport.MsixPbaOffset, 8));

        // EVENT_IDX: the driver asks for an interrupt only after used idx passes 5.
        ring.SetUsedEvent(5);
        for (int i = 0; i < 3; i++) { ring.Offer(0); drv.Notify(0); }
        Assert.Single(msi.Fired);
        Assert.False(line.Level);
        bus.Dispose();
    }

    [Fact]
    public void PciCfgCapabilityReachesTheBar()
    {
        using var t = new VirtioPciTransport(new VirtioRng(), _mem);
        int cap = (int)(Cfg32(t, 0x34) & 0xFF);
        while (!((byte)Cfg32(t, cap) == PciDevice.CapIdVendor && (byte)(Cfg32(t, cap) >> 24) == VirtioPciTransport.CapPciCfg))
            cap = (int)(Cfg32(t, cap) >> 8 & 0xFF);
        CfgWrite32(t, cap + 4, 0);       // bar 0
        CfgWrite32(t, cap + 8, 0x12);    // num_queues
        CfgWrite32(t, cap + 12, 2);      // 2 bytes
        Assert.Equal(1u, Cfg32(t, cap + 16) & 0xFFFF);
        CfgWrite32(t, cap + 8, 0x14);    // device_status
        CfgWrite32(t, cap + 12, 1);
        CfgWrite32(t, cap + 16, VirtioStatus.Acknowledge);
        Assert.Equal(VirtioStatus.Acknowledge, t.Status);
    }
}
