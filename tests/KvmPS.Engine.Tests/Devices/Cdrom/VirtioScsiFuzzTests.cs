using System.Buffers.Binary;
using KvmPS.Devices.Virtio;
using KvmPS.Devices.Virtio.Scsi;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Devices.Cdrom;

/// <summary>Hostile guests: random CDBs, odd cdb/sense sizes and malformed chains never throw out of the device.</summary>
public sealed class VirtioScsiFuzzTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    [Fact]
    public void RandomCommandsGetAStatusAndNeverThrow()
    {
        using var lun = new ScsiCdrom(IsoImage.Open(TestIso.Write(_dir.File("a.iso"), 64)));
        var random = new Random(1616);
        var data = new byte[ScsiCdrom.MaxResponseBytes];
        var cdb = new byte[32];
        var buffer = new byte[1 << 20];
        for (int i = 0; i < 50_000; i++)
        {
            random.NextBytes(cdb);
            // Mostly the commands the drive knows, so their field checks get exercised.
            byte[] known = [0x00, 0x03, 0x12, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x43, 0x46, 0x4A, 0x51, 0x5A, 0xA0, 0xA8, 0xBD];
            if (i % 4 != 0) cdb[0] = known[random.Next(known.Length)];
            int length = random.Next(0, 33);
            byte status = lun.Execute(cdb.AsSpan(0, length), data, out int n, out var read);
            Assert.True(status is Scsi.StatusGood or Scsi.StatusCheckCondition);
            Assert.InRange(n, 0, data.Length);
            if (status == Scsi.StatusCheckCondition) Assert.Equal(0x70, lun.Sense[0]);
            if (read.Bytes > 0 && read.Bytes <= buffer.Length) Assert.True(lun.ReadMedium(read.Offset, buffer.AsSpan(0, (int)read.Bytes)));
            if (i % 1000 == 0) lun.ChangeMedium(i % 2000 == 0 ? null : IsoImage.Open(_dir.File("a.iso")))?.Dispose();
        }
    }

    [Fact]
    public void OddSizesAndShortChainsFailTheDeviceNotTheVmm()
    {
        using var mem = GuestMemory.Create(16UL << 20);
        var errors = new List<string>();
        var device = new VirtioScsi(IsoImage.Open(TestIso.Write(_dir.File("b.iso"), 20)));
        using var t = new VirtioPciTransport(device, mem) { ErrorLog = m => { lock (errors) errors.Add(m); } };
        var d = new TestDriver(t);
        var random = new Random(8);
        for (int round = 0; round < 200; round++)
        {
            Assert.True(d.Negotiate(VirtioScsi.FeatureChange));
            // Driver-written cdb_size / sense_size: anything, clamped by the device.
            Span<byte> v = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(v, (uint)random.Next());
            device.WriteConfig(20, v);
            BinaryPrimitives.WriteUInt32LittleEndian(v, (uint)random.Next(0, 400));
            device.WriteConfig(24, v);
            var ring = new TestRing(mem, 8, 0x10000);
            for (ushort q = 0; q < 3; q++) d.SetupQueue(q, q == 2 ? ring : new TestRing(mem, 8, 0x20000 + 0x1000UL * q));
            d.DriverOk();
            var bytes = new byte[512];
            random.NextBytes(bytes);
            bytes[0] = 1; bytes[1] = 0; bytes[2] = 0x40; bytes[3] = 0;
            mem.Write(0x100000, bytes);
            // A chain of random readable and writable lengths (some too short for header or response).
            uint readable = (uint)random.Next(0, 400), writable = (uint)random.Next(0, 5000);
            ring.SetDesc(0, 0x100000, readable, VirtQueue.DescFlagNext, 1);
            ring.SetDesc(1, 0x200000, writable, VirtQueue.DescFlagWrite);
            ring.Offer(0);
            d.Notify(2);
        }
        // Short chains were reported (and the device asked for a reset); nothing escaped as an exception.
        lock (errors) Assert.Contains(errors, e => e.Contains("device needs reset"));
        lock (errors) Assert.DoesNotContain(errors, e => e.Contains("device error"));
    }
}
