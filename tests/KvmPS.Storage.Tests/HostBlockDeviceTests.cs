using System.Diagnostics;
using KvmPS.Storage.Raw;

namespace KvmPS.Storage.Tests;

/// <summary>A loop device needs root and losetup (util-linux).</summary>
public sealed class LoopDeviceFactAttribute : FactAttribute
{
    public LoopDeviceFactAttribute()
    {
        if (Environment.UserName != "root")
            Skip = "not root (attaching a loop device needs CAP_SYS_ADMIN)";
        else if (!File.Exists("/dev/loop-control"))
            Skip = "no /dev/loop-control";
        else if (!File.Exists("/usr/sbin/losetup") && !File.Exists("/sbin/losetup"))
            Skip = "no losetup (apt-get install -y util-linux)";
    }
}

/// <summary>Issue 17: a host block device given as a disk showed capacity 0 (st_size of a block device is 0).</summary>
public sealed class HostBlockDeviceTests
{
    [LoopDeviceFact]
    public void A_block_device_disk_has_the_size_of_the_device_and_its_data()
    {
        using var dir = new TempDirectory();
        var backing = dir.File("backing.img");
        const int sizeBytes = 3 << 20;
        var data = new byte[sizeBytes];
        new Random(17).NextBytes(data);
        File.WriteAllBytes(backing, data);
        var device = Run("losetup", "--find", "--show", backing).Trim();
        try
        {
            using var image = DiskImageFactory.Open(device, DiskImageFormat.Raw, readOnly: true);
            Assert.IsType<RawImage>(image);
            Assert.Equal((ulong)sizeBytes, image.SizeBytes);
            var sector = new byte[512];
            image.Read(sizeBytes - 512UL, sector);
            Assert.Equal(data.AsSpan(sizeBytes - 512).ToArray(), sector);
        }
        finally
        {
            Run("losetup", "--detach", device);
        }
    }

    private static string Run(string program, params string[] arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(program, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var output = process.StandardOutput.ReadToEnd();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{program} {string.Join(' ', arguments)}: {error}");
        return output;
    }
}
