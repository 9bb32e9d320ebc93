using KvmPS.Engine.Tests.Support;
using KvmPS.Storage;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>virtio-blk through the published kvmps-vmm (out/bin/kvmps-vmm or $KVMPS_VMM).</summary>
public class VirtioBlockProcessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public void DeviceFlagAttachesTheImageAndDescribeShowsIt()
    {
        using var dir = new TempDir();
        string image = dir.File("d.qcow2"), sock = dir.File("c.sock");
        DiskImageFactory.CreateQcow2(image, 1 << 20);
        using var vmm = new VmmProcess("--device", $"block,path={image},serial=proc-serial-42", "--control-socket", sock,
            "--cmdline", "kvmps.run=blk info,blk write 8 16 2,blk read 8 16");
        Assert.True(vmm.WaitForStdout("blk: crc32", Timeout), $"stdout:\n{vmm.Stdout}\nstderr:\n{vmm.Stderr}");
        Assert.Contains("blk: capacity 2048 serial proc-serial-42 ro 0", vmm.Stdout);
        Assert.Contains(BlockTestData.CrcLine(BlockTestData.Pattern(16, 2)), vmm.Stdout);

        using (var client = new ControlClient(sock))
        {
            var devices = client.Ok("describe").GetProperty("devices");
            Assert.Equal(1, devices.GetArrayLength());
            var d = devices[0];
            Assert.Equal("block", d.GetProperty("type").GetString());
            Assert.Equal("00:01.0", d.GetProperty("pci").GetString());
            Assert.Equal(image, d.GetProperty("path").GetString());
            Assert.Equal("proc-serial-42", d.GetProperty("serial").GetString());
            Assert.False(d.GetProperty("read_only").GetBoolean());

            // A second VMM on the same image: the lock refuses it, naming the file (exit 6, BadImage).
            var (code, _, stderr) = VmmProcess.Run(Timeout, "--device", $"block,path={image}", "--serial", "none");
            Assert.Equal(6, code);
            Assert.Contains(image, stderr);
            Assert.Contains("in use", stderr);

            client.Ok("stop", "\"graceful\": false");
        }
        Assert.Equal(0, vmm.WaitForExit(Timeout));
        Assert.Equal(BlockTestData.Pattern(16, 2), BlockTestData.ReadImage(image, 8 * 512, 16 * 512));
    }

    [Fact]
    public void MissingImageExitsWithBadImage()
    {
        using var dir = new TempDir();
        string image = dir.File("missing.raw");
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--device", $"block,path={image}", "--serial", "none");
        Assert.Equal(6, code);
        Assert.Contains(image, stderr);
        Assert.Contains("does not exist", stderr);
    }
}
