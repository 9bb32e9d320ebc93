using System.Buffers.Binary;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio.Scsi;
using KvmPS.Engine.Tests.Support;

namespace KvmPS.Engine.Tests.Devices.Cdrom;

/// <summary>The CD-ROM LUN's SCSI/MMC commands, without virtio: sense, capacity, reads, tray, lock, unit attention.</summary>
public sealed class ScsiCdromTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly byte[] _data = new byte[ScsiCdrom.MaxResponseBytes];

    public void Dispose() => _dir.Dispose();

    private ScsiCdrom Drive(int blocks = 40) => new(IsoImage.Open(TestIso.Write(_dir.File($"d{blocks}.iso"), blocks)));

    private byte Run(ScsiCdrom lun, byte[] cdb, out int length) => lun.Execute(cdb, _data, out length, out _);
    private byte Run(ScsiCdrom lun, byte[] cdb) => lun.Execute(cdb, _data, out _, out _);

    private static (byte Key, byte Asc, byte Ascq) SenseOf(ReadOnlySpan<byte> s)
    {
        Assert.Equal(0x70, s[0]); // fixed format, current
        return (s[2], s[12], s[13]);
    }

    private static byte[] Cdb10(byte op, uint lba = 0, ushort count = 0, byte b1 = 0)
    {
        var c = new byte[10];
        c[0] = op; c[1] = b1;
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(2), lba);
        BinaryPrimitives.WriteUInt16BigEndian(c.AsSpan(7), count);
        return c;
    }

    [Fact]
    public void InquiryReportsARemovableCdDrive()
    {
        using var lun = Drive();
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.Inquiry, 0, 0, 0, 96, 0], out int n));
        Assert.Equal(36, n);
        Assert.Equal(0x05, _data[0]);
        Assert.Equal(0x80, _data[1]);
        Assert.Equal("KvmPS   ", System.Text.Encoding.ASCII.GetString(_data, 8, 8));
        // Allocation length cuts the answer.
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.Inquiry, 0, 0, 0, 5, 0], out n));
        Assert.Equal(5, n);
        // VPD pages 0x00, 0x80, 0x83; an unknown page and a page code without EVPD are refused.
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.Inquiry, 1, 0x00, 0, 255, 0], out n));
        Assert.Equal(new byte[] { 0x00, 0x80, 0x83 }, _data[4..7]);
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.Inquiry, 1, 0x80, 0, 255, 0], out n));
        Assert.Equal(lun.Serial, System.Text.Encoding.ASCII.GetString(_data, 4, n - 4));
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.Inquiry, 1, 0x83, 0, 255, 0], out n));
        Assert.Equal(0x01, _data[5] & 0x0F);
        Assert.Equal(Scsi.StatusCheckCondition, Run(lun, [Scsi.Inquiry, 1, 0x99, 0, 255, 0]));
        Assert.Equal((Scsi.KeyIllegalRequest, (byte)0x24, (byte)0), SenseOf(lun.Sense));
        Assert.Equal(Scsi.StatusCheckCondition, Run(lun, [Scsi.Inquiry, 0, 0x80, 0, 255, 0]));
    }

    [Fact]
    public void CapacityIsInWholeBlocksOf2048()
    {
        using var lun = new ScsiCdrom(IsoImage.Open(TestIso.Write(_dir.File("odd.iso"), 40, extraBytes: 1000)));
        Assert.Equal(Scsi.StatusGood, Run(lun, Cdb10(Scsi.ReadCapacity10), out int n));
        Assert.Equal(8, n);
        Assert.Equal(39u, BinaryPrimitives.ReadUInt32BigEndian(_data)); // last LBA; the partial block is not exposed
        Assert.Equal(2048u, BinaryPrimitives.ReadUInt32BigEndian(_data.AsSpan(4)));
    }

    [Fact]
    public void ReadsUpToTheLastBlockAndRefusesBeyond()
    {
        using var lun = Drive(40);
        Assert.Equal(Scsi.StatusGood, lun.Execute(Cdb10(Scsi.Read10, 38, 2), _data, out _, out var read));
        Assert.Equal((38L * 2048, 2L * 2048), read);
        var buffer = new byte[4096];
        Assert.True(lun.ReadMedium(read.Offset, buffer));
        Assert.Equal(38u, TestIso.BlockOf(buffer));
        Assert.Equal(39u, TestIso.BlockOf(buffer.AsSpan(2048)));
        // One block past the end, and an LBA whose sum with the count overflows 32 bits.
        Assert.Equal(Scsi.StatusCheckCondition, lun.Execute(Cdb10(Scsi.Read10, 39, 2), _data, out _, out read));
        Assert.Equal((Scsi.KeyIllegalRequest, (byte)0x21, (byte)0), SenseOf(lun.Sense));
        Assert.Equal(0, read.Bytes);
        var read12 = new byte[12];
        read12[0] = Scsi.Read12;
        BinaryPrimitives.WriteUInt32BigEndian(read12.AsSpan(2), uint.MaxValue);
        BinaryPrimitives.WriteUInt32BigEndian(read12.AsSpan(6), 2);
        Assert.Equal(Scsi.StatusCheckCondition, lun.Execute(read12, _data, out _, out _));
        BinaryPrimitives.WriteUInt32BigEndian(read12.AsSpan(2), 0);
        BinaryPrimitives.WriteUInt32BigEndian(read12.AsSpan(6), 40);
        Assert.Equal(Scsi.StatusGood, lun.Execute(read12, _data, out _, out read));
        Assert.Equal(40L * 2048, read.Bytes);
        // A zero-length read is accepted and transfers nothing.
        Assert.Equal(Scsi.StatusGood, lun.Execute(Cdb10(Scsi.Read10, 40, 0), _data, out _, out read));
        Assert.Equal(0, read.Bytes);
    }

    [Fact]
    public void EmptyDriveIsNotReadyWithMediumNotPresent()
    {
        using var lun = new ScsiCdrom(null);
        Assert.Equal(Scsi.StatusCheckCondition, Run(lun, [Scsi.TestUnitReady, 0, 0, 0, 0, 0]));
        Assert.Equal((Scsi.KeyNotReady, (byte)0x3A, (byte)0), SenseOf(lun.Sense));
        Assert.Equal(Scsi.StatusCheckCondition, Run(lun, Cdb10(Scsi.ReadCapacity10)));
        Assert.Equal(Scsi.StatusCheckCondition, Run(lun, Cdb10(Scsi.Read10, 0, 1)));
        // REQUEST SENSE reports the condition in fixed format; INQUIRY still works.
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.RequestSense, 0, 0, 0, 252, 0], out int n));
        Assert.Equal(18, n);
        Assert.Equal((Scsi.KeyNotReady, (byte)0x3A, (byte)0), SenseOf(_data));
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.Inquiry, 0, 0, 0, 36, 0]));
    }

    [Fact]
    public void InsertGivesOneUnitAttentionAndANewMediaEvent()
    {
        using var lun = new ScsiCdrom(null);
        Assert.Null(lun.ChangeMedium(IsoImage.Open(TestIso.Write(_dir.File("a.iso"), 20))));
        // GET EVENT STATUS NOTIFICATION is exempt from the unit attention and reports the new medium once.
        byte[] gesn = Cdb10(Scsi.GetEventStatusNotification, 0, 8, b1: 1);
        gesn[4] = 0x10;
        Assert.Equal(Scsi.StatusGood, Run(lun, gesn, out int n));
        Assert.Equal(8, n);
        Assert.Equal((byte)MediaEvent.NewMedia, _data[4]);
        Assert.Equal(0x02, _data[5]); // medium present, tray closed
        Assert.Equal(Scsi.StatusGood, Run(lun, gesn));
        Assert.Equal((byte)MediaEvent.None, _data[4]);
        // The first other command gets UNIT ATTENTION 28/00, the next one succeeds.
        Assert.Equal(Scsi.StatusCheckCondition, Run(lun, [Scsi.TestUnitReady, 0, 0, 0, 0, 0]));
        Assert.Equal((Scsi.KeyUnitAttention, (byte)0x28, (byte)0), SenseOf(lun.Sense));
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.TestUnitReady, 0, 0, 0, 0, 0]));
        // REQUEST SENSE after an insert reports (and clears) the unit attention too.
        using var old = lun.ChangeMedium(IsoImage.Open(TestIso.Write(_dir.File("b.iso"), 30)));
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.RequestSense, 0, 0, 0, 18, 0]));
        Assert.Equal((Scsi.KeyUnitAttention, (byte)0x28, (byte)0), SenseOf(_data));
        Assert.Equal(Scsi.StatusGood, Run(lun, Cdb10(Scsi.ReadCapacity10)));
        Assert.Equal(29u, BinaryPrimitives.ReadUInt32BigEndian(_data));
    }

    [Fact]
    public void LockedTrayRefusesTheGuestsEjectUntilAllowed()
    {
        using var lun = Drive();
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.PreventAllowMediumRemoval, 0, 0, 0, 1, 0]));
        Assert.True(lun.Locked);
        Assert.Equal(Scsi.StatusCheckCondition, Run(lun, [Scsi.StartStopUnit, 0, 0, 0, 0x02, 0]));
        Assert.Equal((Scsi.KeyIllegalRequest, (byte)0x53, (byte)0x02), SenseOf(lun.Sense));
        Assert.True(lun.MediumPresent);
        // Mode page 2A shows the lock state.
        Assert.Equal(Scsi.StatusGood, Run(lun, Cdb10(Scsi.ModeSense10, 0, 255) is var c ? Patch(c, 2, 0x2A) : c, out int n));
        Assert.Equal(8 + 22, n);
        Assert.Equal(0x2A, _data[8]);
        Assert.Equal(0x02, _data[8 + 6] & 0x02);
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.PreventAllowMediumRemoval, 0, 0, 0, 0, 0]));
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.StartStopUnit, 0, 0, 0, 0x02, 0]));
        Assert.True(lun.TrayOpen);
        Assert.Equal(Scsi.StatusCheckCondition, Run(lun, [Scsi.TestUnitReady, 0, 0, 0, 0, 0]));
        Assert.Equal((Scsi.KeyNotReady, (byte)0x3A, (byte)0x02), SenseOf(lun.Sense));
        // Closing the tray loads the same disc again, with a unit attention.
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.StartStopUnit, 0, 0, 0, 0x03, 0]));
        Assert.Equal(Scsi.StatusCheckCondition, Run(lun, [Scsi.TestUnitReady, 0, 0, 0, 0, 0]));
        Assert.Equal((Scsi.KeyUnitAttention, (byte)0x28, (byte)0), SenseOf(lun.Sense));
        Assert.Equal(Scsi.StatusGood, Run(lun, [Scsi.TestUnitReady, 0, 0, 0, 0, 0]));
    }

    private static byte[] Patch(byte[] c, int at, byte value) { c[at] = value; return c; }

    [Fact]
    public void TocDiscInfoConfigurationAndMechanismStatus()
    {
        using var lun = Drive(40);
        Assert.Equal(Scsi.StatusGood, Run(lun, Cdb10(Scsi.ReadToc, 0, 100), out int n));
        Assert.Equal(4 + 16, n);
        Assert.Equal(18, BinaryPrimitives.ReadUInt16BigEndian(_data));
        Assert.Equal(1, _data[4 + 2]);                                  // track 1
        Assert.Equal(0xAA, _data[12 + 2]);                              // lead-out
        Assert.Equal(40u, BinaryPrimitives.ReadUInt32BigEndian(_data.AsSpan(12 + 4)));
        Assert.Equal(Scsi.StatusGood, Run(lun, Cdb10(Scsi.ReadToc, 0, 100, b1: 2), out n)); // MSF: lead-out at 40 + 150 frames
        Assert.Equal(new byte[] { 0, 0, 2, 40 }, _data[16..20]);
        Assert.Equal(Scsi.StatusCheckCondition, Run(lun, Patch(Cdb10(Scsi.ReadToc, 0, 100), 2, 5))); // format 5: not supported
        Assert.Equal(Scsi.StatusGood, Run(lun, Cdb10(Scsi.ReadDiscInformation, 0, 34), out n));
        Assert.Equal(34, n);
        Assert.Equal(0x0E, _data[2]);
        Assert.Equal(Scsi.StatusGood, Run(lun, Cdb10(Scsi.GetConfiguration, 0, 512), out n));
        Assert.Equal(ScsiCdrom.ProfileCdRom, BinaryPrimitives.ReadUInt16BigEndian(_data.AsSpan(6)));
        Assert.Equal((uint)n - 4, BinaryPrimitives.ReadUInt32BigEndian(_data));
        var mech = new byte[12];
        mech[0] = Scsi.MechanismStatus; mech[9] = 8;
        Assert.Equal(Scsi.StatusGood, Run(lun, mech, out n));
        Assert.Equal(8, n);
        var luns = new byte[12];
        luns[0] = Scsi.ReportLuns; luns[9] = 16;
        Assert.Equal(Scsi.StatusGood, Run(lun, luns, out n));
        Assert.Equal(16, n);
        Assert.Equal(8u, BinaryPrimitives.ReadUInt32BigEndian(_data));
    }

    [Fact]
    public void UnknownCommandsAreInvalidOperationCode()
    {
        using var lun = Drive();
        foreach (byte op in new byte[] { 0x0A, 0x2A, 0x35, 0xFF, 0x52 }) // WRITE(6), WRITE(10), SYNCHRONIZE CACHE, junk, READ TRACK INFO
        {
            Assert.Equal(Scsi.StatusCheckCondition, Run(lun, Cdb10(op, 0, 1)));
            Assert.Equal((Scsi.KeyIllegalRequest, (byte)0x20, (byte)0), SenseOf(lun.Sense));
        }
    }

    [Fact]
    public void IsoChecksNameTheFile()
    {
        string missing = _dir.File("missing.iso");
        Assert.Contains(missing, Assert.Throws<IsoImageException>(() => IsoImage.Open(missing)).Message);
        Assert.Contains("is a directory", Assert.Throws<IsoImageException>(() => IsoImage.Open(_dir.Path)).Message);
        string notIso = _dir.File("disk.img");
        File.WriteAllBytes(notIso, new byte[1 << 20]);
        var e = Assert.Throws<IsoImageException>(() => IsoImage.Open(notIso));
        Assert.Contains(notIso, e.Message);
        Assert.Contains("not an ISO 9660 image", e.Message);
        string tiny = _dir.File("tiny.iso");
        File.WriteAllBytes(tiny, "CD001"u8.ToArray());
        Assert.Contains("not an ISO 9660", Assert.Throws<IsoImageException>(() => IsoImage.Open(tiny)).Message);
        if (Environment.UserName != "root") // root reads anything
        {
            string locked = TestIso.Write(_dir.File("locked.iso"), 20);
            File.SetUnixFileMode(locked, UnixFileMode.None);
            Assert.Contains(locked, Assert.Throws<IsoImageException>(() => IsoImage.Open(locked)).Message);
        }
        using var ok = IsoImage.Open(TestIso.Write(_dir.File("ok.iso"), 20));
        Assert.Equal(20u, ok.Blocks);
    }

    [Fact]
    public void ConfigErrorsNameTheKeyAndFile()
    {
        var config = DeviceConfig.FromOptions(DeviceOptions.FromFlag("cdrom,path=" + _dir.File("nope.iso")));
        var e = Assert.Throws<DeviceConfigException>(() => config.CreateDevice(new DeviceContext(null!, null!, _ => { })));
        Assert.Contains("key 'path'", e.Message);
        Assert.Contains(_dir.File("nope.iso"), e.Message);
        Assert.Contains("key 'path'", Assert.Throws<DeviceConfigException>(() => DeviceConfig.FromOptions(DeviceOptions.FromFlag("cdrom,path="))).Message);
        Assert.Contains("'size'", Assert.Throws<DeviceConfigException>(() => DeviceConfig.FromOptions(DeviceOptions.FromFlag("cdrom,size=1"))).Message);
        var empty = (CdromDeviceConfig)DeviceConfig.FromOptions(DeviceOptions.FromFlag("cdrom"));
        Assert.Null(empty.Path);
        using var device = (VirtioScsi)empty.CreateDevice(new DeviceContext(null!, null!, _ => { }));
        Assert.False(device.Lun.MediumPresent);
    }
}
