using System.Text;
using KvmPS.Devices.Display;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Engine.Tests.Firmware;
using KvmPS.Engine.Tests.Support;
using KvmPS.State;
using KvmPS.Vm;
using KvmPS.Vm.Boot;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Devices.Display;

/// <summary>A SeaBIOS fact that also needs GRUB's rescue CD image and the Bochs display VGA BIOS.</summary>
public sealed class GrubDisplayFactAttribute : FactAttribute
{
    public const string Iso = "/usr/lib/grub-rescue/grub-rescue-cdrom.iso";

    public GrubDisplayFactAttribute()
    {
        string? why = new SeaBiosFactAttribute().Skip;
        if (why is null && !File.Exists(Iso)) why = $"no {Iso} (apt-get install -y grub-rescue-pc)";
        if (why is null && !File.Exists(DisplayDeviceConfig.DefaultRomPath)) why = $"no {DisplayDeviceConfig.DefaultRomPath} (apt-get install -y seabios)";
        if (why is not null) Skip = why;
    }
}

/// <summary>
/// Real firmware on the display: SeaBIOS finds the display (class "other"), runs vgabios-bochs-display from its ROM
/// BAR, the VGA BIOS sets 1024x768x32 through DISPI and draws text with its 8x16 font; GRUB's menu (from the rescue
/// CD image on a virtio-blk disk) then appears in the framebuffer, read back through IFramebuffer.
/// </summary>
[Trait("Category", "Display")]
public sealed class DisplayFirmwareTests(ITestOutputHelper output)
{
    // Guest CPL0 code is emulated on the nested test host and the VGA BIOS draws every character pixel by pixel.
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(300); // SeaBIOS and GRUB run emulated here: over 240 s under load

    private static bool WaitFor(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline) { if (condition()) return true; Thread.Sleep(200); }
        return condition();
    }

    private static string ArtifactDirectory()
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "display-artifacts");
        Directory.CreateDirectory(dir);
        return dir;
    }

    [GrubDisplayFact]
    public void GrubMenuIsDrawnIntoTheFramebufferAndSurvivesSnapshotRestore()
    {
        string dir = Directory.CreateTempSubdirectory("kvt-display-").FullName;
        try
        {
            string iso = Path.Combine(dir, "grub.iso");
            File.Copy(GrubDisplayFactAttribute.Iso, iso);
            var debugcon = new StringBuilder();
            var config = new MachineConfig
            {
                FirmwarePath = FirmwareImage.SeaBiosAlias,
                DebugConOutput = data => { lock (debugcon) debugcon.Append(Encoding.ASCII.GetString(data)); },
                Devices = [new DisplayDeviceConfig(), new BlockDeviceConfig { Path = iso, ReadOnly = true }],
                DeviceLog = m => { lock (debugcon) debugcon.Append("[vmm] " + m + "\n"); },
            };
            string Log() { lock (debugcon) return debugcon.ToString(); }
            var screen = new ScreenText(File.ReadAllBytes(DisplayDeviceConfig.DefaultRomPath));
            string snapshot = Path.Combine(dir, "snap");
            byte[] pictureBefore;
            FramebufferMode modeBefore;
            using (var run = new GuestRun(config))
            {
                var fb = run.Machine.Display ?? throw new InvalidOperationException("the machine has no display");
                run.Machine.Start();
                // The VGA BIOS's own text first (SeaBIOS's banner on the emulated text console): a non-blank picture.
                long firstGeneration = 0;
                string[] firstText = [];
                bool drawn = WaitFor(() =>
                {
                    long g = fb.Refresh();
                    if (fb.Mode.IsBlank) return false;
                    firstText = screen.Read(fb);
                    firstGeneration = g;
                    return firstText.Any(l => l.Trim().Length > 0);
                }, Timeout);
                output.WriteLine("--- first text on screen ---\n" + string.Join('\n', firstText.Where(l => l.Length > 0)));
                Assert.True(drawn, "nothing was drawn into the framebuffer; debugcon:\n" + Log());
                string log = Log();
                Assert.Contains("Other display found at 00:01.0", log);            // SeaBIOS: class 0x0380, ROM run as the VGA ROM
                Assert.Contains("Start SeaVGABIOS", log);
                Assert.Contains("bochs-display: id is 0xb0c5, good", log);         // the VGA BIOS read our DISPI ID
                Assert.Contains("bochs-display: using 1024x768, 32 bpp", log);
                Assert.Equal(new FramebufferMode(1024, 768, 32, 4096, 0), fb.Mode);

                // Then GRUB's menu: its title line, read back glyph by glyph.
                string[] text = [];
                bool menu = WaitFor(() => { fb.Refresh(); text = screen.Read(fb); return text.Any(l => l.Contains("GNU GRUB  version 2")); }, Timeout);
                string shown = string.Join('\n', text.Where(l => l.Length > 0));
                output.WriteLine("--- text on screen ---\n" + shown);
                string ppm = Path.Combine(ArtifactDirectory(), "grub-menu.ppm");
                ScreenText.SavePpm(fb, ppm);
                output.WriteLine($"picture: {ppm}");
                Assert.True(menu, "GRUB's menu did not appear in the framebuffer; debugcon:\n" + Log());
                Assert.True(fb.Refresh() > firstGeneration, "the picture never changed after the first text");
                var rows = new bool[768];
                fb.ChangedRows(firstGeneration, fb.Mode, rows);
                Assert.Contains(true, rows);

                Assert.True(run.Machine.Pause(TimeSpan.FromSeconds(10)));
                modeBefore = fb.Mode;
                pictureBefore = fb.Vram.Bytes[..(int)(modeBefore.StrideBytes * modeBefore.Height)].ToArray();
                SnapshotDirectory.Write(snapshot, SnapshotStateFile.Encode(run.Machine.SaveState()), "{}", run.Machine.Memory);
                run.Machine.Stop("test done");
            }

            using var restored = new MachineBuilder(config, _ => { }).Restore(SnapshotDirectory.Open(snapshot), RestoreMemoryMode.Private);
            var display = restored.Display!;
            Assert.Equal(modeBefore, display.Mode);
            Assert.True(display.Vram.Bytes[..pictureBefore.Length].SequenceEqual(pictureBefore), "the restored framebuffer differs");
            Assert.Contains(screen.Read(display), l => l.Contains("GNU GRUB"));
            restored.Start();
            // The restored guest keeps running on the restored picture (its slot is where the restored BAR says).
            Assert.Equal(display.FramebufferBar.MappedAt, display.FramebufferBar.Address);
            Thread.Sleep(1000);
            Assert.Contains(screen.Read(display), l => l.Contains("GNU GRUB"));
            restored.Stop("test done");
        }
        finally { Directory.Delete(dir, true); }
    }
}
