using System.Buffers.Binary;

namespace KvmPS.Vmm.Vnc;

/// <summary>
/// An RFB PIXEL_FORMAT (RFC 6143 7.4): how the viewer wants pixels. Only true-colour formats of 8, 16 or 32 bits are
/// served; colour-map formats need SetColourMapEntries, which this server does not send.
/// </summary>
public readonly record struct RfbPixelFormat(
    byte BitsPerPixel, byte Depth, bool BigEndian, bool TrueColour,
    ushort RedMax, ushort GreenMax, ushort BlueMax, byte RedShift, byte GreenShift, byte BlueShift)
{
    public const int WireBytes = 16;

    /// <summary>What the server offers in ServerInit: 32 bits, depth 24, little-endian 0x00RRGGBB.</summary>
    public static readonly RfbPixelFormat Default = new(32, 24, false, true, 255, 255, 255, 16, 8, 0);

    public int BytesPerPixel => BitsPerPixel / 8;

    /// <summary><see cref="Encode"/> returns its input: 8-bit channels at 16, 8 and 0 (depth and byte order aside).</summary>
    public bool IsRgb888 => BitsPerPixel == 32 && TrueColour && RedMax == 255 && GreenMax == 255 && BlueMax == 255
        && RedShift == 16 && GreenShift == 8 && BlueShift == 0;

    /// <summary><see cref="IsRgb888"/> in this machine's byte order: a 0x00RRGGBB uint's bytes are the wire pixel.</summary>
    public bool IsHostRgb888 => IsRgb888 && BigEndian != BitConverter.IsLittleEndian;

    /// <summary>Why a viewer's format cannot be served, or null when it can.</summary>
    public string? Problem()
    {
        if (BitsPerPixel is not (8 or 16 or 32)) return $"{BitsPerPixel} bits per pixel (8, 16 or 32 are served)";
        if (!TrueColour) return "a colour-map format (only true colour is served)";
        if (RedMax == 0 || GreenMax == 0 || BlueMax == 0) return "a colour maximum of 0";
        if (!FitsIn(RedMax, RedShift) || !FitsIn(GreenMax, GreenShift) || !FitsIn(BlueMax, BlueShift)) return "a colour that does not fit in the pixel";
        return null;
    }

    private bool FitsIn(ushort max, byte shift) => shift < BitsPerPixel && ((ulong)max << shift) < (1UL << BitsPerPixel);

    public static RfbPixelFormat Read(ReadOnlySpan<byte> b) => new(
        b[0], b[1], b[2] != 0, b[3] != 0,
        BinaryPrimitives.ReadUInt16BigEndian(b[4..]), BinaryPrimitives.ReadUInt16BigEndian(b[6..]), BinaryPrimitives.ReadUInt16BigEndian(b[8..]),
        b[10], b[11], b[12]);

    public void Write(Span<byte> b)
    {
        b[..WireBytes].Clear();
        b[0] = BitsPerPixel; b[1] = Depth; b[2] = (byte)(BigEndian ? 1 : 0); b[3] = (byte)(TrueColour ? 1 : 0);
        BinaryPrimitives.WriteUInt16BigEndian(b[4..], RedMax);
        BinaryPrimitives.WriteUInt16BigEndian(b[6..], GreenMax);
        BinaryPrimitives.WriteUInt16BigEndian(b[8..], BlueMax);
        b[10] = RedShift; b[11] = GreenShift; b[12] = BlueShift;
    }

    /// <summary>The pixel value of a 0x00RRGGBB colour, each channel scaled to its maximum with rounding.</summary>
    public uint Encode(uint rgb)
    {
        uint r = (rgb >> 16) & 0xff, g = (rgb >> 8) & 0xff, b = rgb & 0xff;
        return ((r * RedMax + 127) / 255 << RedShift) | ((g * GreenMax + 127) / 255 << GreenShift) | ((b * BlueMax + 127) / 255 << BlueShift);
    }

    /// <summary>Writes <paramref name="pixel"/> (from <see cref="Encode"/>) in the format's size and byte order.</summary>
    public void WritePixel(Span<byte> to, uint pixel)
    {
        switch (BitsPerPixel)
        {
            case 8: to[0] = (byte)pixel; break;
            case 16:
                if (BigEndian) BinaryPrimitives.WriteUInt16BigEndian(to, (ushort)pixel); else BinaryPrimitives.WriteUInt16LittleEndian(to, (ushort)pixel);
                break;
            default:
                if (BigEndian) BinaryPrimitives.WriteUInt32BigEndian(to, pixel); else BinaryPrimitives.WriteUInt32LittleEndian(to, pixel);
                break;
        }
    }

    /// <summary>
    /// ZRLE's CPIXEL size (RFC 6143 7.7.6): 3 bytes for a 32-bit true-colour format of depth 24 or less whose colours
    /// all sit in the low or the high three bytes; otherwise the pixel size.
    /// </summary>
    public int CompressedBytesPerPixel => CompressedInLowBytes is null ? BytesPerPixel : 3;

    /// <summary>True: a CPIXEL is the low 3 bytes; false: the high 3; null: CPIXEL = PIXEL.</summary>
    private bool? CompressedInLowBytes
    {
        get
        {
            if (BitsPerPixel != 32 || Depth > 24 || !TrueColour) return null;
            ulong all = ((ulong)RedMax << RedShift) | ((ulong)GreenMax << GreenShift) | ((ulong)BlueMax << BlueShift);
            if (all <= 0xFFFFFF) return true;
            if ((all & 0xFF) == 0) return false;
            return null;
        }
    }

    /// <summary>Writes a ZRLE CPIXEL: the pixel's bytes as sent, less the unused one when <see cref="CompressedBytesPerPixel"/> is 3.</summary>
    public void WriteCompressedPixel(Span<byte> to, uint pixel)
    {
        switch (CompressedInLowBytes)
        {
            case null: WritePixel(to, pixel); break;
            case true when BigEndian: to[0] = (byte)(pixel >> 16); to[1] = (byte)(pixel >> 8); to[2] = (byte)pixel; break;
            case true: to[0] = (byte)pixel; to[1] = (byte)(pixel >> 8); to[2] = (byte)(pixel >> 16); break;
            case false when BigEndian: to[0] = (byte)(pixel >> 24); to[1] = (byte)(pixel >> 16); to[2] = (byte)(pixel >> 8); break;
            case false: to[0] = (byte)(pixel >> 8); to[1] = (byte)(pixel >> 16); to[2] = (byte)(pixel >> 24); break;
        }
    }
}
