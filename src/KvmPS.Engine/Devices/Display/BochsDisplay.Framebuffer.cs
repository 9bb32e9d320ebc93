using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;

namespace KvmPS.Devices.Display;

/// <summary>
/// The framebuffer side: which pages changed when (a generation per page, fed by the KVM dirty log of the VRAM slot
/// and by writes that came through BAR 0 as MMIO), and the pixels converted to 0x00RRGGBB. Viewers call these from
/// their own threads: the generations are guarded by their own lock; pixels are read as the guest writes them.
/// </summary>
public sealed partial class BochsDisplay : IFramebuffer
{
    private readonly object _dirtyLock = new();
    private readonly long[] _pageGeneration;
    /// <summary>Pages written by the VMM itself (clear on enable, restore, BAR 0 MMIO writes): KVM's log never sees those.</summary>
    private readonly ulong[] _softDirty;
    private long _generation = 1;
    private FramebufferMode _lastMode;
    private long _modeGeneration = 1;
    private ulong[]? _logScratch;

    public FramebufferMode Mode { get { lock (SyncRoot) return _dispi.Mode; } }

    public long Generation { get { lock (_dirtyLock) return _generation; } }

    public long Refresh()
    {
        var mode = Mode;
        lock (_dirtyLock)
        {
            _logScratch ??= new ulong[_softDirty.Length];
            var log = _logScratch;
            bool logged;
            try { logged = _slot?.TakeDirtyLog(log) ?? false; }
            catch (Exception e)
            {
                Log($"{Name}: dirty log: {e.Message}");
                logged = false;
            }
            if (!logged) Array.Clear(log);
            long next = _generation + 1;
            bool any = false;
            for (int w = 0; w < log.Length; w++)
            {
                ulong bits = log[w] | (Volatile.Read(ref _softDirty[w]) == 0 ? 0 : Interlocked.Exchange(ref _softDirty[w], 0));
                while (bits != 0)
                {
                    int b = System.Numerics.BitOperations.TrailingZeroCount(bits);
                    bits &= bits - 1;
                    int page = w * 64 + b;
                    if (page < _pageGeneration.Length) { _pageGeneration[page] = next; any = true; }
                }
            }
            if (mode != _lastMode) { _lastMode = mode; _modeGeneration = next; any = true; }
            // Nothing changed: the generation stays, so a viewer polling an idle screen sees no work.
            if (any) _generation = next;
            return _generation;
        }
    }

    public void ChangedRows(long since, FramebufferMode mode, Span<bool> rows)
    {
        int height = Math.Min(rows.Length, Math.Max(0, mode.Height));
        lock (_dirtyLock)
        {
            if (since <= 0 || _modeGeneration > since || mode != _lastMode)
            {
                rows[..height].Fill(true);
                return;
            }
            long rowBytes = (long)mode.Width * DispiRegisters.BytesPerPixel(mode.BitsPerPixel);
            for (int r = 0; r < height; r++)
            {
                long start = mode.OffsetBytes + (long)r * mode.StrideBytes;
                long end = start + rowBytes - 1;
                bool changed = false;
                if (start < 0 || end >= Vram.SizeBytes) changed = true; // outside VRAM: let the viewer redraw it (as black)
                else
                    for (long p = start / Vram.PageSize; p <= end / Vram.PageSize && !changed; p++)
                        changed = _pageGeneration[p] > since;
                rows[r] = changed;
            }
        }
    }

    public void CopyPixels(FramebufferMode mode, int x, int y, int width, int height, Span<uint> destination)
    {
        if (width <= 0 || height <= 0) return;
        if ((long)width * height > destination.Length) throw new ArgumentException($"destination holds {destination.Length} pixels, the rectangle {width}x{height} needs more.");
        destination[..(width * height)].Clear();
        if (mode.IsBlank || mode.StrideBytes <= 0) return;
        int bpp = mode.BitsPerPixel;
        if (bpp is not (8 or 15 or 16 or 24 or 32)) return;
        int bytes = DispiRegisters.BytesPerPixel(bpp);
        bool big = BigEndianFramebuffer;
        var vram = Vram.Bytes;
        int x0 = Math.Max(x, 0), x1 = (int)Math.Min((long)x + width, mode.Width);
        int y0 = Math.Max(y, 0), y1 = (int)Math.Min((long)y + height, mode.Height);
        for (int row = y0; row < y1; row++)
        {
            long rowStart = mode.OffsetBytes + (long)row * mode.StrideBytes;
            var line = destination.Slice((row - y) * width, width);
            long first = rowStart + (long)x0 * bytes, past = rowStart + (long)x1 * bytes;
            if (bpp == 32 && !big && x1 > x0 && first >= 0 && past <= vram.Length)
            {
                // The common case (32 bpp little-endian, B G R X in memory) is already 0xXXRRGGBB: copy, clear X.
                var to = line.Slice(x0 - x, x1 - x0);
                MemoryMarshal.Cast<byte, uint>(vram[(int)first..(int)past]).CopyTo(to);
                ClearUnusedByte(to);
                continue;
            }
            for (int col = x0; col < x1; col++)
            {
                long at = rowStart + (long)col * bytes;
                if (at < 0 || at + bytes > vram.Length) continue; // a mode that does not fit reads as black
                line[col - x] = ToRgb(vram.Slice((int)at, bytes), bpp, big);
            }
        }
    }

    private static void ClearUnusedByte(Span<uint> pixels)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var mask = new Vector<uint>(0x00FFFFFFu);
            var vectors = MemoryMarshal.Cast<uint, Vector<uint>>(pixels);
            for (int v = 0; v < vectors.Length; v++) vectors[v] &= mask;
            i = vectors.Length * Vector<uint>.Count;
        }
        for (; i < pixels.Length; i++) pixels[i] &= 0x00FFFFFFu;
    }

    /// <summary>One guest pixel as 0x00RRGGBB. 8 bpp is shown as grey levels: this device has no VGA DAC to hold a palette.</summary>
    public static uint ToRgb(ReadOnlySpan<byte> p, int bpp, bool bigEndian)
    {
        switch (bpp)
        {
            case 32:
                return bigEndian ? (uint)(p[1] << 16 | p[2] << 8 | p[3]) : (uint)(p[2] << 16 | p[1] << 8 | p[0]);
            case 24:
                return bigEndian ? (uint)(p[0] << 16 | p[1] << 8 | p[2]) : (uint)(p[2] << 16 | p[1] << 8 | p[0]);
            case 16:
            {
                int v = bigEndian ? BinaryPrimitives.ReadUInt16BigEndian(p) : BinaryPrimitives.ReadUInt16LittleEndian(p);
                int r = v >> 11 & 31, g = v >> 5 & 63, b = v & 31;
                return (uint)((r << 3 | r >> 2) << 16 | (g << 2 | g >> 4) << 8 | (b << 3 | b >> 2));
            }
            case 15:
            {
                int v = bigEndian ? BinaryPrimitives.ReadUInt16BigEndian(p) : BinaryPrimitives.ReadUInt16LittleEndian(p);
                int r = v >> 10 & 31, g = v >> 5 & 31, b = v & 31;
                return (uint)((r << 3 | r >> 2) << 16 | (g << 3 | g >> 2) << 8 | (b << 3 | b >> 2));
            }
            case 8:
                return (uint)(p[0] << 16 | p[0] << 8 | p[0]);
            default:
                return 0;
        }
    }

    // ---- VRAM written or read by the VMM ----
    private void MarkSoftDirty(long offset, long length)
    {
        if (length <= 0) return;
        for (long p = offset / Vram.PageSize; p <= (offset + length - 1) / Vram.PageSize && p < _pageGeneration.Length; p++)
            Interlocked.Or(ref _softDirty[p >> 6], 1UL << (int)(p & 63));
    }

    private void MarkAllSoftDirty()
    {
        for (int w = 0; w < _softDirty.Length; w++) Interlocked.Exchange(ref _softDirty[w], ulong.MaxValue);
    }

    private void ClearVram()
    {
        Vram.Bytes.Clear();
        MarkAllSoftDirty();
    }

    /// <summary>BAR 0 through MMIO: only while there is no memory slot (tests, or a slot KVM refused); the slot serves it otherwise.</summary>
    private void ReadVram(ulong offset, Span<byte> data)
    {
        var vram = Vram.Bytes;
        for (int i = 0; i < data.Length; i++)
        {
            ulong o = offset + (ulong)i;
            data[i] = o < (ulong)vram.Length ? vram[(int)o] : (byte)0xFF;
        }
    }

    private void WriteVram(ulong offset, ReadOnlySpan<byte> data)
    {
        var vram = Vram.Bytes;
        if (offset >= (ulong)vram.Length) return;
        int n = (int)Math.Min((ulong)data.Length, (ulong)vram.Length - offset);
        data[..n].CopyTo(vram[(int)offset..]);
        MarkSoftDirty((long)offset, n);
    }
}
