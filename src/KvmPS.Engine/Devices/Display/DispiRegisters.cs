namespace KvmPS.Devices.Display;

/// <summary>
/// The Bochs VBE DISPI registers (index 0-10) as QEMU's bochs-display and std VGA implement them, and as Linux's
/// drivers/gpu/drm/tiny/bochs.c and SeaBIOS's vgasrc/bochsdisplay.c use them. A guest value the device cannot take
/// is refused (the register keeps its value) or clamped after every write while enabled, so the mode always fits in
/// VRAM; each kind of refusal is logged once. Not thread-safe: the display serializes accesses.
/// </summary>
public sealed class DispiRegisters
{
    public const int IndexId = 0, IndexXres = 1, IndexYres = 2, IndexBpp = 3, IndexEnable = 4, IndexBank = 5,
        IndexVirtWidth = 6, IndexVirtHeight = 7, IndexXOffset = 8, IndexYOffset = 9, IndexVideoMemory64K = 10, Count = 11;
    public const ushort Id0 = 0xB0C0, Id5 = 0xB0C5;
    public const ushort Enabled = 0x01, GetCaps = 0x02, Dac8Bit = 0x20, LfbEnabled = 0x40, NoClearMem = 0x80;
    public const ushort MaxXres = 16000, MaxYres = 12000, MaxBpp = 32;

    private readonly ushort[] _r = new ushort[Count];
    private readonly HashSet<string> _logged = new(StringComparer.Ordinal);
    private readonly Action<string> _log;

    public long VramBytes { get; }
    /// <summary>Called when the guest enables a mode without NOCLEARMEM: the device clears the VRAM, as the real one does.</summary>
    public Action? ClearVram { get; set; }

    public DispiRegisters(long vramBytes, Action<string>? log = null)
    {
        VramBytes = vramBytes;
        _log = log ?? (_ => { });
        Reset();
    }

    /// <summary>Power-on values, as QEMU's: everything zero (disabled) but the ID (ID5) and the VRAM size.</summary>
    public void Reset()
    {
        Array.Clear(_r);
        _r[IndexId] = Id5;
        _r[IndexVideoMemory64K] = (ushort)Math.Min(ushort.MaxValue, VramBytes / 65536);
    }

    public bool IsEnabled => (_r[IndexEnable] & Enabled) != 0;
    public ushort this[int index] => _r[index];

    /// <summary>Bytes per pixel of a DISPI depth (15 and 16 both take two).</summary>
    public static int BytesPerPixel(int bpp) => (bpp + 7) / 8;

    public ushort Read(int index)
    {
        if ((uint)index >= Count) return 0;
        // GETCAPS: the resolution and depth registers read as the device's maximums (bochs.c and vgabios probe them).
        if ((_r[IndexEnable] & GetCaps) != 0)
            switch (index)
            {
                case IndexXres: return MaxXres;
                case IndexYres: return MaxYres;
                case IndexBpp: return MaxBpp;
            }
        return _r[index];
    }

    public void Write(int index, ushort value)
    {
        switch (index)
        {
            case IndexId:
                if (value is >= Id0 and <= Id5) _r[index] = value;
                else Refuse("id", $"ID 0x{value:x4} refused (0xB0C0-0xB0C5)");
                return;
            case IndexXres:
                if (value <= MaxXres && value % 8 == 0) _r[index] = value;
                else Refuse("xres", $"XRES {value} refused (a multiple of 8 up to {MaxXres})");
                break;
            case IndexYres:
                if (value <= MaxYres) _r[index] = value;
                else Refuse("yres", $"YRES {value} refused (up to {MaxYres})");
                break;
            case IndexBpp:
                if (value == 0) value = 8; // as QEMU: 0 means 8
                if (value is 8 or 15 or 16 or 24 or 32) _r[index] = value;
                else Refuse("bpp", $"BPP {value} refused (8, 15, 16, 24 or 32; no 4-bit planar modes)");
                break;
            case IndexEnable:
                bool was = IsEnabled;
                _r[index] = (ushort)(value & (Enabled | GetCaps | Dac8Bit | LfbEnabled | NoClearMem));
                if (IsEnabled && !was)
                {
                    // A new mode starts unpanned with the virtual size of the visible one.
                    _r[IndexVirtWidth] = _r[IndexXres];
                    _r[IndexVirtHeight] = _r[IndexYres];
                    _r[IndexXOffset] = _r[IndexYOffset] = 0;
                    if ((value & NoClearMem) == 0) ClearVram?.Invoke();
                }
                break;
            case IndexBank:
                // No legacy 0xA0000 window on this device: the bank is kept (for readers) but maps nothing.
                _r[index] = (ushort)(value & Math.Max(0, _r[IndexVideoMemory64K] - 1));
                return;
            case IndexVirtWidth:
            case IndexVirtHeight:
            case IndexXOffset:
            case IndexYOffset:
                _r[index] = value;
                break;
            default:
                return; // VIDEO_MEMORY_64K is read-only; higher indexes do not exist
        }
        Fixup();
    }

    /// <summary>Restores saved registers; values are put through the same checks, so a bad record cannot break the mode.</summary>
    public void Load(ReadOnlySpan<ushort> values)
    {
        Reset();
        if (values.Length != Count) throw new ArgumentException($"DISPI state has {values.Length} registers, not {Count}.");
        for (int i = 0; i < Count; i++)
            if (i is not (IndexVideoMemory64K or IndexEnable)) _r[i] = values[i];
        if (_r[IndexId] is < Id0 or > Id5) _r[IndexId] = Id5;
        if (_r[IndexBpp] is not (0 or 8 or 15 or 16 or 24 or 32)) _r[IndexBpp] = 8;
        _r[IndexXres] = (ushort)(Math.Min(_r[IndexXres], MaxXres) & ~7);
        _r[IndexYres] = Math.Min(_r[IndexYres], MaxYres);
        _r[IndexEnable] = (ushort)(values[IndexEnable] & (Enabled | GetCaps | Dac8Bit | LfbEnabled | NoClearMem));
        Fixup();
    }

    public ushort[] Save() => (ushort[])_r.Clone();

    /// <summary>
    /// Brings an enabled mode inside VRAM: at least 8x1, a virtual width no smaller than the visible one, a virtual
    /// height that fits the VRAM, offsets that keep the visible rectangle inside the virtual screen (QEMU's
    /// vbe_fixup_regs does the same clamps).
    /// </summary>
    private void Fixup()
    {
        if (!IsEnabled) return;
        int bpp = _r[IndexBpp] == 0 ? 8 : _r[IndexBpp];
        _r[IndexBpp] = (ushort)bpp;
        int bytes = BytesPerPixel(bpp);
        int xres = Math.Max((int)_r[IndexXres], 8), yres = Math.Max((int)_r[IndexYres], 1);
        int virtWidth = Math.Clamp((int)_r[IndexVirtWidth], xres, MaxXres);
        long line = (long)virtWidth * bytes;
        long maxY = VramBytes / line;
        if (yres > maxY)
        {
            virtWidth = xres; // the panning width goes first
            line = (long)virtWidth * bytes;
            maxY = VramBytes / line;
            if (yres > maxY)
            {
                Refuse("fit", $"mode {xres}x{yres}x{bpp} does not fit in {VramBytes} bytes of VRAM: height clamped to {maxY}");
                yres = (int)maxY;
            }
        }
        int virtHeight = (int)Math.Clamp(Math.Max(_r[IndexVirtHeight], (ushort)yres), 1, Math.Min(maxY, ushort.MaxValue));
        int xOffset = Math.Min((int)_r[IndexXOffset], virtWidth - xres);
        int yOffset = Math.Min((int)_r[IndexYOffset], virtHeight - yres);
        _r[IndexXres] = (ushort)xres;
        _r[IndexYres] = (ushort)yres;
        _r[IndexVirtWidth] = (ushort)virtWidth;
        _r[IndexVirtHeight] = (ushort)virtHeight;
        _r[IndexXOffset] = (ushort)xOffset;
        _r[IndexYOffset] = (ushort)yOffset;
    }

    /// <summary>The visible mode, blank while disabled.</summary>
    public FramebufferMode Mode
    {
        get
        {
            if (!IsEnabled) return default;
            int bpp = _r[IndexBpp], bytes = BytesPerPixel(bpp);
            int stride = _r[IndexVirtWidth] * bytes;
            long offset = (long)_r[IndexYOffset] * stride + (long)_r[IndexXOffset] * bytes;
            return new FramebufferMode(_r[IndexXres], _r[IndexYres], bpp, stride, offset);
        }
    }

    private void Refuse(string kind, string message)
    {
        if (_logged.Add(kind)) _log($"bochs-display: {message} (logged once)");
    }
}
