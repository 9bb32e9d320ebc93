using System.Text.Json;
using KvmPS.Devices;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Engine.Tests.Support;
using KvmPS.Storage;
using KvmPS.Vm;
using KvmPS.Vm.Boot;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>"block" device options and attach-time image errors: each names the file and no VM is created.</summary>
public class VirtioBlockConfigTests
{
    private static BlockDeviceConfig Flag(string text) => (BlockDeviceConfig)DeviceConfig.FromOptions(DeviceOptions.FromFlag(text));

    [Fact]
    public void FlagsAndJsonParse()
    {
        var c = Flag("block,path=/x/disk.qcow2,format=qcow2,read_only=on,serial=SN-1,discard=off");
        Assert.Equal("/x/disk.qcow2", c.Path);
        Assert.Equal(DiskImageFormat.Qcow2, c.Format);
        Assert.True(c.ReadOnly);
        Assert.Equal("SN-1", c.Serial);
        Assert.False(c.Discard);

        var d = Flag("block,path=d.img");
        Assert.Equal(DiskImageFormat.Auto, d.Format);
        Assert.False(d.ReadOnly);
        Assert.True(d.Discard);
        Assert.Equal("", d.Serial);

        using var doc = JsonDocument.Parse("""{ "type": "block", "path": "a.raw", "format": "raw", "read_only": true, "serial": "abc" }""");
        var j = (BlockDeviceConfig)DeviceConfig.FromOptions(DeviceOptions.FromJson(doc.RootElement, "vm.json: key 'devices'[0]"));
        Assert.Equal(("a.raw", DiskImageFormat.Raw, true, "abc"), (j.Path, j.Format, j.ReadOnly, j.Serial));

        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms)) { w.WriteStartObject(); c.Describe(w); w.WriteEndObject(); }
        using var described = JsonDocument.Parse(ms.ToArray());
        Assert.Equal("SN-1", described.RootElement.GetProperty("serial").GetString());
        Assert.Equal("qcow2", described.RootElement.GetProperty("format").GetString());
        Assert.True(described.RootElement.GetProperty("read_only").GetBoolean());
    }

    [Theory]
    [InlineData("block", "needs 'path'")]
    [InlineData("block,path=a,format=vmdk", "'vmdk' is not auto, raw or qcow2")]
    [InlineData("block,path=a,serial=123456789012345678901", "at most 20")]
    [InlineData("block,path=a,read_only=maybe", "not on or off")]
    [InlineData("block,path=a,cache=none", "unknown key")]
    public void BadOptionsNameTheKey(string flag, string message)
    {
        var e = Assert.Throws<DeviceConfigException>(() => Flag(flag));
        Assert.Contains(message, e.Message);
        Assert.Contains("--device " + flag, e.Message);
    }

    private static BootImageException AttachFails(BlockDeviceConfig disk)
    {
        var e = Assert.Throws<BootImageException>(() =>
        {
            using var run = new GuestRun(new MachineConfig { Devices = [disk], DeviceLog = _ => { } });
        });
        Assert.IsAssignableFrom<DiskImageException>(e.InnerException);
        return e;
    }

    [Fact]
    public void MissingImage()
    {
        using var dir = new TempDir();
        string path = dir.File("nope.qcow2");
        var e = AttachFails(new BlockDeviceConfig { Path = path });
        Assert.Contains(path, e.Message);
        Assert.Contains("does not exist", e.Message);
        Assert.Equal(path, e.ImagePath);
    }

    [Theory]
    [InlineData("raw")]
    [InlineData("qcow2")]
    public void ImageLockedByAnotherOpen(string format)
    {
        using var dir = new TempDir();
        string path = dir.File("busy." + format);
        if (format == "raw") DiskImageFactory.CreateRaw(path, 1 << 20); else DiskImageFactory.CreateQcow2(path, 1 << 20);
        using (var holder = DiskImageFactory.Open(path)) // read-write, as another VM or QEMU would
        {
            var e = AttachFails(new BlockDeviceConfig { Path = path });
            Assert.IsType<ImageInUseException>(e.InnerException);
            Assert.Contains(path, e.Message);
            Assert.Contains("in use", e.Message);
        }
        // Once the other user is gone the image attaches (and the failed attempt left no lock behind).
        using var run = new GuestRun(new MachineConfig { Devices = [new BlockDeviceConfig { Path = path }], DeviceLog = _ => { } });
        Assert.Single(run.Machine.Devices);
    }

    [Fact]
    public void CorruptQcow2Header()
    {
        using var dir = new TempDir();
        string path = dir.File("bad.qcow2");
        DiskImageFactory.CreateQcow2(path, 1 << 20);
        using (var f = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            f.Position = 4;
            f.Write([0, 0, 0, 99]); // version 99
            f.Position = 20;
            f.Write([0xFF, 0xFF, 0xFF, 0xFF]); // cluster_bits garbage
        }
        var e = AttachFails(new BlockDeviceConfig { Path = path });
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void RawImageNotAMultipleOf512()
    {
        using var dir = new TempDir();
        string path = dir.File("odd.img");
        File.WriteAllBytes(path, new byte[1000]);
        var e = AttachFails(new BlockDeviceConfig { Path = path });
        Assert.Contains(path, e.Message);
        Assert.Contains("512", e.Message);
    }

    [Fact]
    public void DeviceReleasesTheImageWhenTheVmGoes()
    {
        using var dir = new TempDir();
        string path = dir.File("d.raw");
        DiskImageFactory.CreateRaw(path, 1 << 20);
        using (var run = new GuestRun(new MachineConfig { Devices = [new BlockDeviceConfig { Path = path }], DeviceLog = _ => { } }))
            Assert.Throws<ImageInUseException>(() => DiskImageFactory.Open(path).Dispose());
        DiskImageFactory.Open(path).Dispose();
    }
}
