using System.Buffers.Binary;
using System.IO.Compression;

namespace KvmPS.Vmm.Vnc;

/// <summary>
/// ZRLE (RFC 6143 7.7.6) for one connection: a single zlib stream for the connection's life, flushed (sync) at the end
/// of each rectangle so the viewer can decode it at once. Tiles of 64×64 as solid (one colour), packed palette
/// (2 to 16 colours) or raw CPIXELs, whichever applies first.
/// </summary>
public sealed class ZrleEncoder : IDisposable
{
    public const int TileSize = 64;
    private const int MaxPalette = 16;

    private readonly MemoryStream _compressed = new();
    private readonly ZLibStream _zlib;
    private readonly byte[] _tile = new byte[1 + MaxPalette * 4 + TileSize * TileSize * 4];
    private readonly uint[] _values = new uint[TileSize * TileSize];
    private readonly uint[] _palette = new uint[MaxPalette];

    public ZrleEncoder() => _zlib = new ZLibStream(_compressed, CompressionLevel.Fastest, leaveOpen: true);

    /// <summary>
    /// Appends a ZRLE rectangle body (u32 length, zlib data) for <paramref name="rgb"/> (0x00RRGGBB, <paramref name="width"/>
    /// per row) to <paramref name="output"/>.
    /// </summary>
    public void Encode(ReadOnlySpan<uint> rgb, int width, int height, RfbPixelFormat format, Stream output)
    {
        _compressed.SetLength(0);
        bool identity = format.IsRgb888;
        for (int ty = 0; ty < height; ty += TileSize)
            for (int tx = 0; tx < width; tx += TileSize)
            {
                int tw = Math.Min(TileSize, width - tx), th = Math.Min(TileSize, height - ty);
                int n = 0;
                if (identity)
                    for (int y = 0; y < th; y++, n += tw) rgb.Slice((ty + y) * width + tx, tw).CopyTo(_values.AsSpan(n));
                else
                    for (int y = 0; y < th; y++)
                        for (int x = 0; x < tw; x++) _values[n++] = format.Encode(rgb[(ty + y) * width + tx + x]);
                int length = EncodeTile(_values.AsSpan(0, n), tw, th, format);
                _zlib.Write(_tile, 0, length);
            }
        _zlib.Flush(); // Z_SYNC_FLUSH: everything so far is decodable, the stream goes on with the next rectangle
        Span<byte> header = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(header, (uint)_compressed.Length);
        output.Write(header);
        output.Write(_compressed.GetBuffer(), 0, (int)_compressed.Length);
    }

    private int EncodeTile(ReadOnlySpan<uint> values, int width, int height, RfbPixelFormat format)
    {
        int cp = format.CompressedBytesPerPixel;
        int colours = 0;
        foreach (uint v in values)
        {
            if (_palette.AsSpan(0, colours).IndexOf(v) >= 0) continue;
            if (colours == MaxPalette) { colours = MaxPalette + 1; break; }
            _palette[colours++] = v;
        }
        int at = 0;
        if (colours == 1)
        {
            _tile[at++] = 1;
            format.WriteCompressedPixel(_tile.AsSpan(at), _palette[0]);
            return at + cp;
        }
        if (colours <= MaxPalette)
        {
            _tile[at++] = (byte)colours;
            for (int i = 0; i < colours; i++, at += cp) format.WriteCompressedPixel(_tile.AsSpan(at), _palette[i]);
            int bits = colours == 2 ? 1 : colours <= 4 ? 2 : 4;
            var palette = _palette.AsSpan(0, colours);
            for (int y = 0; y < height; y++)
            {
                // Each row starts on a byte boundary; indices fill a byte from its most significant bit.
                int acc = 0, used = 0;
                for (int x = 0; x < width; x++)
                {
                    acc = (acc << bits) | palette.IndexOf(values[y * width + x]);
                    used += bits;
                    if (used == 8) { _tile[at++] = (byte)acc; acc = 0; used = 0; }
                }
                if (used > 0) _tile[at++] = (byte)(acc << (8 - used));
            }
            return at;
        }
        _tile[at++] = 0;
        foreach (uint v in values) { format.WriteCompressedPixel(_tile.AsSpan(at), v); at += cp; }
        return at;
    }

    public void Dispose()
    {
        _zlib.Dispose();
        _compressed.Dispose();
    }
}
