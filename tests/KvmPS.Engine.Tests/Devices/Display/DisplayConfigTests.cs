using System.Text.Json;
using KvmPS.Devices.Config;
using KvmPS.Devices.Display;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vmm;

namespace KvmPS.Engine.Tests.Devices.Display;

/// <summary>--device display and its config entry: defaults, limits, one display per VM, and display.get from the VMM process.</summary>
public sealed class DisplayConfigTests
{
    private static DisplayDeviceConfig Parse(string flag) => Assert.IsType<DisplayDeviceConfig>(DeviceConfig.FromOptions(DeviceOptions.FromFlag(flag)));

    [Fact]
    public void DefaultsAndExplicitValues()
    {
        var d = Parse("display");
        Assert.Equal((16L << 20, 1024, 768, (string?)null), (d.VramBytes, d.WidthPixels, d.HeightPixels, d.RomPath));
        Assert.Equal(DisplayDeviceConfig.DefaultRomPath, d.EffectiveRomPath(firmwareBoot: true));
        Assert.Null(d.EffectiveRomPath(firmwareBoot: false));                 // a kernel boot runs no option ROM
        var e = Parse("display,vram_bytes=33554432,width_pixels=1920,height_pixels=1080,rom_path=none");
        Assert.Equal((32L << 20, 1920, 1080), (e.VramBytes, e.WidthPixels, e.HeightPixels));
        Assert.Null(e.EffectiveRomPath(firmwareBoot: true));
        Assert.Equal("/x.bin", Parse("display,rom_path=/x.bin").EffectiveRomPath(false));
    }

    [Theory]
    [InlineData("display,vram_bytes=3000000", "vram_bytes")]                 // below 4 MiB
    [InlineData("display,vram_bytes=12582912", "power of two")]              // 12 MiB
    [InlineData("display,vram_bytes=536870912", "vram_bytes")]               // 512 MiB
    [InlineData("display,width_pixels=4096", "width_pixels")]                // beyond an EDID timing
    [InlineData("display,vram_bytes=4194304,width_pixels=1920,height_pixels=1080", "more than vram_bytes")]
    [InlineData("display,rom_path=", "rom_path")]
    [InlineData("display,depth=32", "depth")]
    public void BadValuesAreRefusedByName(string flag, string named)
    {
        var e = Assert.Throws<DeviceConfigException>(() => DeviceConfig.FromOptions(DeviceOptions.FromFlag(flag)));
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void AVmHasAtMostOneDisplay()
    {
        var e = Assert.Throws<VmmConfigException>(() => VmmConfig.FromArgs(["--device", "display", "--device", "display"]));
        Assert.Contains("at most one", e.Message);
        var one = VmmConfig.FromArgs(["--device", "display,width_pixels=800,height_pixels=600"]);
        var spec = Assert.Single(one.Configuration.Devices!);
        var display = Assert.IsType<KvmPS.Contract.DisplayDeviceSpec>(spec);
        Assert.Equal((16L << 20, 800, 600), (display.VramBytes, display.WidthPixels, display.HeightPixels));
    }

    [Fact]
    public void TheVmmAnswersDisplayGet()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--control-socket", sock, "--serial", "none", "--device", "display,vram_bytes=8388608");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", TimeSpan.FromSeconds(30));
        var describe = client.Ok("describe");
        Assert.Contains("display.get", describe.GetProperty("requests").EnumerateArray().Select(r => r.GetString()));
        var device = describe.GetProperty("devices").EnumerateArray().Single();
        Assert.Equal("display", device.GetProperty("type").GetString());
        var reply = client.Ok("display.get");
        Assert.Equal("00:01.0", reply.GetProperty("pci").GetString());
        Assert.False(reply.GetProperty("enabled").GetBoolean());             // the built-in guest never sets a mode
        Assert.Equal(0, reply.GetProperty("width_pixels").GetInt32());
        Assert.Equal(0, reply.GetProperty("vnc_clients").GetInt32());
        Assert.True(reply.TryGetProperty("vnc_unix_path", out var path) is false || path.ValueKind == JsonValueKind.Null);
        client.Ok("stop");
        Assert.Equal(0, vmm.WaitForExit(TimeSpan.FromSeconds(30)));
    }
}
