using System.Text.Json;
using KvmPS.Devices.Config;
using KvmPS.Devices.Pci;

namespace KvmPS.Devices.Display;

/// <summary>
/// <c>--device display[,vram_bytes=N][,width_pixels=W][,height_pixels=H][,rom_path=PATH|none]</c>: the Bochs display
/// (<see cref="BochsDisplay"/>). <c>vram_bytes</c>: a power of two from 4 MiB to 256 MiB (default 16 MiB);
/// <c>width_pixels</c>/<c>height_pixels</c>: the EDID's preferred mode (default 1024x768; it must fit in VRAM at
/// 32 bpp); <c>rom_path</c>: the VGA BIOS behind the ROM BAR (default with firmware:
/// /usr/share/seabios/vgabios-bochs-display.bin; <c>none</c>: no ROM; a kernel boot has none unless one is given).
/// </summary>
public sealed record DisplayDeviceConfig : PciFunctionConfig
{
    public const string TypeName = "display";
    public const string DefaultRomPath = "/usr/share/seabios/vgabios-bochs-display.bin";
    public const string NoRom = "none";
    public const int DefaultWidth = 1024, DefaultHeight = 768;
    /// <summary>The one KVM memory slot number the framebuffer uses (RAM takes the low numbers, the firmware image 16).</summary>
    public const uint VramSlotNumber = 20;

    public override string Type => TypeName;
    public long VramBytes { get; init; } = BochsDisplay.DefaultVramBytes;
    public int WidthPixels { get; init; } = DefaultWidth;
    public int HeightPixels { get; init; } = DefaultHeight;
    /// <summary>The ROM image, <see cref="NoRom"/>, or null: the default for the boot (<see cref="EffectiveRomPath"/>).</summary>
    public string? RomPath { get; init; }

    public static DisplayDeviceConfig Parse(DeviceOptions options)
    {
        long vram = options.Int("vram_bytes", BochsDisplay.DefaultVramBytes, BochsDisplay.MinVramBytes, BochsDisplay.MaxVramBytes);
        long width = options.Int("width_pixels", DefaultWidth, 320, Edid.MaxDimension);
        long height = options.Int("height_pixels", DefaultHeight, 200, Edid.MaxDimension);
        string? rom = options.String("rom_path");
        options.EnsureAllUsed();
        if ((vram & (vram - 1)) != 0) throw new DeviceConfigException($"{options.Source}: key 'vram_bytes': {vram} is not a power of two (4 MiB to 256 MiB).");
        if (width * height * 4 > vram)
            throw new DeviceConfigException($"{options.Source}: keys 'width_pixels'/'height_pixels': {width}x{height} at 32 bpp needs {width * height * 4} bytes, more than vram_bytes {vram}.");
        if (rom is { Length: 0 }) throw new DeviceConfigException($"{options.Source}: key 'rom_path': the path is empty (use 'none' for no ROM).");
        return new DisplayDeviceConfig { VramBytes = vram, WidthPixels = (int)width, HeightPixels = (int)height, RomPath = rom };
    }

    /// <summary>The ROM this boot offers: the configured one, the default VGA BIOS with firmware, or none.</summary>
    public string? EffectiveRomPath(bool firmwareBoot) => RomPath switch
    {
        NoRom => null,
        null => firmwareBoot ? DefaultRomPath : null,
        var path => path,
    };

    public override PciDevice CreateFunction(PciFunctionContext context)
    {
        PciExpansionRom? rom = null;
        if (EffectiveRomPath(context.FirmwareBoot) is { } path)
        {
            try { rom = PciExpansionRom.Load(path); }
            catch (ExpansionRomException e) { throw new DeviceConfigException($"display device: key 'rom_path': {e.Message}"); }
        }
        var display = new BochsDisplay(VramBytes, WidthPixels, HeightPixels);
        try
        {
            if (rom is not null) display.AttachExpansionRom(rom);
            display.AttachSlot(context.CreateVramSlot(display.Vram));
            context.Device.Log($"bochs-display: {VramBytes >> 20} MiB VRAM, EDID {WidthPixels}x{HeightPixels}, ROM {rom?.Source ?? "none"}");
            return display;
        }
        catch
        {
            display.Dispose();
            throw;
        }
    }

    public override void Describe(Utf8JsonWriter w)
    {
        w.WriteNumber("vram_bytes", VramBytes);
        w.WriteNumber("width_pixels", WidthPixels);
        w.WriteNumber("height_pixels", HeightPixels);
        if (RomPath is not null) w.WriteString("rom_path", RomPath);
    }
}
