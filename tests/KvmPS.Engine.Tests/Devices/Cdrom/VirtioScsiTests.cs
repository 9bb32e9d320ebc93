using System.Buffers.Binary;
using KvmPS.Contract;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Scsi;
using KvmPS.Engine.Tests.Support;
using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices.Cdrom;

/// <summary>virtio-scsi through the PCI transport, driven like Linux's virtio_scsi: requests, bad LUNs, events, media.change, state.</summary>
public sealed class VirtioScsiTests : IDisposable
{
    private const ulong Req = 0x100000, Resp = 0x101000, DataIn = 0x102000, Events = 0x110000;
    private const int HeaderBytes = 19 + 32, ResponseBytes = 12 + 96;
    private readonly TempDir _dir = new();
    private readonly GuestMemory _mem = GuestMemory.Create(16UL << 20);
    private readonly List<string> _errors = new();
    private readonly VirtioScsi _device;
    private readonly VirtioPciTransport _transport;
    private readonly TestDriver _driver;
    private readonly TestRing _requests, _events;
    private ushort _next;

    public VirtioScsiTests()
    {
        _device = new VirtioScsi(IsoImage.Open(TestIso.Write(_dir.File("a.iso"), 40)));
        _transport = new VirtioPciTransport(_device, _mem) { ErrorLog = m => { lock (_errors) _errors.Add(m); } };
        _driver = new TestDriver(_transport);
        Assert.True(_driver.Negotiate(VirtioScsi.FeatureChange));
        _driver.SetupQueue(0, new TestRing(_mem, 8, 0x10000));
        _driver.SetupQueue(1, _events = new TestRing(_mem, 8, 0x11000));
        _driver.SetupQueue(2, _requests = new TestRing(_mem, 8, 0x12000));
        _driver.DriverOk();
    }

    public void Dispose()
    {
        _transport.Dispose();
        _mem.Dispose();
        _dir.Dispose();
    }

    private record ScsiReply(uint SenseLen, uint Resid, byte Status, byte Response, byte[] Sense, uint UsedLen);

    /// <summary>One request: header (LUN + CDB), response, data-in buffer of <paramref name="dataIn"/> bytes.</summary>
    private ScsiReply Send(byte[] cdb, int dataIn = 4096, byte target = 0, ushort lun = 0)
    {
        var header = new byte[HeaderBytes];
        header[0] = 1; header[1] = target; header[2] = (byte)(0x40 | lun >> 8); header[3] = (byte)lun;
        cdb.CopyTo(header, 19);
        _mem.Write(Req, header);
        _mem.Write(Resp, new byte[ResponseBytes]);
        _mem.Write(DataIn, new byte[dataIn]);
        const ushort d = 0; // requests complete at once: the same three descriptors serve each
        _requests.SetDesc(d, Req, HeaderBytes, VirtQueue.DescFlagNext, (ushort)(d + 1));
        _requests.SetDesc(d + 1, Resp, ResponseBytes, (ushort)(VirtQueue.DescFlagWrite | (dataIn > 0 ? VirtQueue.DescFlagNext : 0)), (ushort)(d + 2));
        if (dataIn > 0) _requests.SetDesc(d + 2, DataIn, (uint)dataIn, VirtQueue.DescFlagWrite);
        _requests.Offer(d);
        _driver.Notify(2);
        Assert.Equal(++_next, _requests.UsedIdx);
        var r = new byte[ResponseBytes];
        _mem.Read(Resp, r);
        return new ScsiReply(BinaryPrimitives.ReadUInt32LittleEndian(r), BinaryPrimitives.ReadUInt32LittleEndian(r.AsSpan(4)), r[10], r[11], r[12..30], _requests.UsedElem(_next - 1).Len);
    }

    private static byte[] Read10(uint lba, ushort blocks)
    {
        var c = new byte[10];
        c[0] = Scsi.Read10;
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(2), lba);
        BinaryPrimitives.WriteUInt16BigEndian(c.AsSpan(7), blocks);
        return c;
    }

    [Fact]
    public void ConfigurationAdvertisesOneLunAndTheDefaultSizes()
    {
        Span<byte> c = stackalloc byte[VirtioScsi.ConfigBytes];
        _device.ReadConfig(0, c);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(c));          // num_queues
        Assert.Equal(96u, BinaryPrimitives.ReadUInt32LittleEndian(c[20..]));   // sense_size
        Assert.Equal(32u, BinaryPrimitives.ReadUInt32LittleEndian(c[24..]));   // cdb_size
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(c[30..]));     // max_target
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(c[32..]));    // max_lun
        Assert.Equal(0x1048, _transport.DeviceId);
    }

    [Fact]
    public void ReadsLandInGuestMemoryAndOtherLunsAreBadTargets()
    {
        var r = Send(Read10(39, 1));
        Assert.Equal((byte)0, r.Status);
        Assert.Equal(VirtioScsi.ResponseOk, r.Response);
        Assert.Equal(2048u, 4096 - r.Resid);
        Assert.Equal((uint)ResponseBytes + 2048, r.UsedLen);
        var block = new byte[2048];
        _mem.Read(DataIn, block);
        Assert.Equal(39u, TestIso.BlockOf(block));
        // A data-in buffer smaller than the transfer gets what fits.
        r = Send(Read10(3, 2), dataIn: 1024);
        Assert.Equal((byte)0, r.Status);
        _mem.Read(DataIn, block.AsSpan(0, 1024));
        Assert.Equal(3u, TestIso.BlockOf(block));
        // Past the end: CHECK CONDITION with the sense in the response.
        r = Send(Read10(40, 1));
        Assert.Equal(Scsi.StatusCheckCondition, r.Status);
        Assert.Equal(18u, r.SenseLen);
        Assert.Equal((0x70, Scsi.KeyIllegalRequest, 0x21), (r.Sense[0], r.Sense[2], r.Sense[12]));
        // Target 1 and LUN 1 do not exist.
        Assert.Equal(VirtioScsi.ResponseBadTarget, Send([Scsi.TestUnitReady, 0, 0, 0, 0, 0], target: 1).Response);
        Assert.Equal(VirtioScsi.ResponseBadTarget, Send([Scsi.Inquiry, 0, 0, 0, 36, 0], lun: 1).Response);
        Assert.Equal(VirtioScsi.ResponseOk, Send([Scsi.Inquiry, 0, 0, 0, 36, 0]).Response);
        lock (_errors) Assert.Empty(_errors);
    }

    [Fact]
    public void MediaChangeNotifiesTheGuestAndHonoursTheLock()
    {
        // The driver posts an event buffer, as virtio_scsi does at probe.
        _events.SetDesc(0, Events, 16, VirtQueue.DescFlagWrite);
        _events.Offer(0);
        _driver.Notify(1);
        Assert.Equal(0, _events.UsedIdx);

        var eject = _device.ChangeMedia(new MediaChangeRequest { Pci = "00:01.0" }, "00:01.0");
        Assert.Null(eject.Path);
        Assert.Equal(1, _events.UsedIdx);                       // VIRTIO_SCSI_T_PARAM_CHANGE, ASC 3A
        Assert.Equal(VirtioScsi.EventParamChange, _mem.ReadUInt32(Events));
        Assert.Equal(0x3Au, _mem.ReadUInt32(Events + 12));
        Assert.Equal(Scsi.StatusCheckCondition, Send([Scsi.TestUnitReady, 0, 0, 0, 0, 0]).Status);

        // A bad ISO is refused naming it; the drive stays as it was.
        string bad = _dir.File("bad.iso");
        File.WriteAllBytes(bad, new byte[40000]);
        var e = Assert.Throws<ArgumentException>(() => _device.ChangeMedia(new MediaChangeRequest { Pci = "00:01.0", Path = bad }, "00:01.0"));
        Assert.Contains(bad, e.Message);

        string b = TestIso.Write(_dir.File("b.iso"), 25);
        var insert = _device.ChangeMedia(new MediaChangeRequest { Pci = "00:01.0", Path = b }, "00:01.0");
        Assert.Equal(b, insert.Path);
        Assert.Equal(25 * 2048, insert.SizeBytes);
        var r = Send([Scsi.TestUnitReady, 0, 0, 0, 0, 0]);
        Assert.Equal((Scsi.StatusCheckCondition, Scsi.KeyUnitAttention, (byte)0x28), (r.Status, r.Sense[2], r.Sense[12]));
        Assert.Equal((byte)0, Send([Scsi.TestUnitReady, 0, 0, 0, 0, 0]).Status);

        // The guest locks the tray: a change is refused (InvalidState) unless forced, and the guest is asked to eject.
        Assert.Equal((byte)0, Send([Scsi.PreventAllowMediumRemoval, 0, 0, 0, 1, 0]).Status);
        Assert.Throws<InvalidOperationException>(() => _device.ChangeMedia(new MediaChangeRequest { Pci = "00:01.0" }, "00:01.0"));
        Assert.Equal(b, _device.StateReply("00:01.0").Path);
        Assert.True(_device.StateReply("00:01.0").Locked);
        var gesn = new byte[10] { Scsi.GetEventStatusNotification, 1, 0, 0, 0x10, 0, 0, 0, 8, 0 };
        Assert.Equal((byte)0, Send(gesn).Status);
        Assert.Equal((byte)MediaEvent.EjectRequest, _mem.ReadByte(DataIn + 4));
        var forced = _device.ChangeMedia(new MediaChangeRequest { Pci = "00:01.0", Force = true }, "00:01.0");
        Assert.Null(forced.Path);
        lock (_errors) Assert.Empty(_errors);
    }

    [Fact]
    public void StateRoundTripsTheMediumLockAndPendingAttention()
    {
        string b = TestIso.Write(_dir.File("b.iso"), 25);
        Assert.Equal((byte)0, Send([Scsi.PreventAllowMediumRemoval, 0, 0, 0, 1, 0]).Status);
        _device.ChangeMedia(new MediaChangeRequest { Pci = "00:01.0", Path = b, Force = true }, "00:01.0");
        var w = new StateWriter();
        _device.SaveState(w);

        // A fresh device on the configured image takes the snapshot's medium, lock and unit attention.
        using var other = new VirtioScsi(IsoImage.Open(_dir.File("a.iso")));
        other.RestoreState(new StateReader(w.ToArray(), "pci/01/virtio-scsi"), VirtioScsiState.Version);
        Assert.Equal(b, other.StateReply("00:01.0").Path);
        Assert.True(other.Lun.Locked);
        Assert.Equal(Scsi.AscMediumChanged, other.Lun.PendingUnitAttention); // not yet reported when the snapshot was taken

        // A snapshot whose medium is gone fails naming it.
        File.Delete(b);
        using var third = new VirtioScsi(null);
        var e = Assert.Throws<StateFormatException>(() => third.RestoreState(new StateReader(w.ToArray(), "pci/01/virtio-scsi"), VirtioScsiState.Version));
        Assert.Contains(b, e.Message);
    }
}
